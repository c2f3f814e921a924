// Package hookcli is ocisnap-hook's command line and its "nothing to do"
// rule, free of the engine's imports: the hook's gate (cmd/ocisnap-hook),
// which runs for every container on a node, links only this, and execs
// the engine (cmd/ocisnap-hook-engine, package hooks) when a container asks
// something of ocisnap. Both parse the same flag set defined here, so that
// the gate accepts and refuses exactly what the engine does.
package hookcli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// Defaults that the engine's packages own too (pkg/statefile,
// pkg/failurelog, pkg/location): hooks' tests check that they agree.
const (
	DefaultStateDir       = "/run/ocisnap"
	DefaultStatusDir      = "/var/lib/ocisnap-status"
	DefaultSpoolDir       = "/var/lib/ocisnap-spool"
	DefaultCertsDir       = "/etc/containers/certs.d"
	DefaultRegistriesConf = "/etc/containers/registries.conf"
	// DefaultRegistryTimeout bounds the network operations of one hook run.
	DefaultRegistryTimeout = 60 * time.Second
	// DefaultMaxLayers is --max-layers' default.
	DefaultMaxLayers = 16
	// EngineName is the engine's file name, beside the gate.
	EngineName = "ocisnap-hook-engine"
)

// Settings are the administrator's flag values.
type Settings struct {
	Policy           policy.Policy
	ExportExcludes   []string
	IdentityFrom     string
	StateDir         string
	StatusDir        string
	RequireSameImage bool
	StrictExport     bool
	MaxLayers        int
	AuthFile         string
	CertsDir         string
	// RegistriesConf is "" until the flags are registered, which set it
	// to DefaultRegistriesConf unless given.
	RegistriesConf  string
	RegistryTimeout time.Duration
	SpoolDir        string
}

// Defaults returns the settings with no flag given. For root they are
// /var/lib/ocisnap (snapshots), /var/lib/ocisnap-views (view sources) and
// /run/ocisnap; a rootless user (also when running as uid 0 of the user
// namespace rootless Podman makes) gets per-user defaults.
func Defaults() Settings {
	s := Settings{
		Policy:          policy.Default(),
		StateDir:        DefaultStateDir,
		StatusDir:       DefaultStatusDir,
		IdentityFrom:    ocistate.IdentityEngine,
		CertsDir:        DefaultCertsDir,
		SpoolDir:        DefaultSpoolDir,
		RegistryTimeout: DefaultRegistryTimeout,
		MaxLayers:       DefaultMaxLayers,
	}
	if uid, rootless := HostUID(); rootless {
		state, allow, views := UserDefaults(uid)
		s.StateDir = state
		s.StatusDir = filepath.Join(filepath.Dir(allow), "ocisnap-status")
		s.Policy.AllowDirs = []string{allow}
		s.Policy.ViewDirs = []string{views}
		s.SpoolDir = filepath.Join(filepath.Dir(allow), "ocisnap-spool")
	}
	return s
}

// Targets are where the flags store their values: the fields of the
// engine's hooks.Config, or of the gate's Settings.
type Targets struct {
	Policy                                       *policy.Policy
	ExportExcludes                               *[]string
	IdentityFrom, StateDir, StatusDir            *string
	RequireSameImage, StrictExport               *bool
	MaxLayers                                    *int
	AuthFile, CertsDir, RegistriesConf, SpoolDir *string
	RegistryTimeout                              *time.Duration
	LogFile, LogLevel, LogTarget                 *string // nil: no log flags (RegisterFlags)
	Version                                      *bool
}

// Targets returns targets bound to s's fields (no log flags).
func (s *Settings) Targets() Targets {
	return Targets{
		Policy: &s.Policy, ExportExcludes: &s.ExportExcludes,
		IdentityFrom: &s.IdentityFrom, StateDir: &s.StateDir, StatusDir: &s.StatusDir,
		RequireSameImage: &s.RequireSameImage, StrictExport: &s.StrictExport, MaxLayers: &s.MaxLayers,
		AuthFile: &s.AuthFile, CertsDir: &s.CertsDir, RegistriesConf: &s.RegistriesConf, SpoolDir: &s.SpoolDir,
		RegistryTimeout: &s.RegistryTimeout,
	}
}

// Register adds the administrator's flags to fs, bound to t; each
// target's current value is the flag's default.
func Register(fs *pflag.FlagSet, t Targets) {
	p := t.Policy
	fs.StringArrayVar(&p.AllowDirs, "allow-dir", p.AllowDirs,
		"directory that restore sources and export destinations must resolve inside (repeatable)")
	fs.StringArrayVar(&p.ViewDirs, "allow-view-dir", p.ViewDirs,
		"directory that dir:/file: view sources must resolve inside (repeatable; must not overlap an --allow-dir)")
	fs.Int64Var(&p.MaxBytes, "max-bytes", p.MaxBytes, "most file content bytes a restore may write")
	fs.Int64Var(&p.MaxEntries, "max-entries", p.MaxEntries, "most tar entries a restore may apply")
	fs.Int64Var(&p.MaxExportBytes, "max-export-bytes", p.MaxExportBytes,
		"most file content bytes an export may write (over it the export fails and the previous snapshot stays; 0: no limit)")
	fs.StringArrayVar(t.ExportExcludes, "export-exclude", *t.ExportExcludes,
		"absolute container path left out of every export, with everything below it (repeatable; added to io.ocisnap.export-exclude)")
	fs.BoolVar(&p.AllowDevices, "allow-devices", p.AllowDevices, "let a restore create device nodes")
	fs.BoolVar(&p.GVisorCompat, "gvisor-compat", p.GVisorCompat,
		"honour gVisor's dev.gvisor.tar.rootfs.upper annotation like io.ocisnap.restore")
	fs.StringVar(t.IdentityFrom, "identity-from", *t.IdentityFrom,
		"where the Kubernetes namespace for {namespace} in --allow-dir comes from: engine (containerd's or CRI-O's own key) or nri (ocisnap-nri's stamp)")
	fs.StringVar(t.StateDir, "state-dir", *t.StateDir, "directory of per-container state files")
	fs.StringVar(t.StatusDir, "status-dir", *t.StatusDir,
		"directory of the failure records that ocisnap status lists (persistent; outside every --allow-dir and --allow-view-dir)")
	fs.BoolVar(t.RequireSameImage, "require-same-image", *t.RequireSameImage,
		"refuse to restore an oci:/docker:// snapshot recorded on another base image than the container's (by default a warning is logged)")
	fs.BoolVar(t.StrictExport, "strict-export", *t.StrictExport,
		"exit non-zero when an export fails (by default it is logged and the hook exits 0)")
	fs.IntVar(t.MaxLayers, "max-layers", *t.MaxLayers,
		"most layers of a persisted oci:/docker:// snapshot; past it, the export writes one whole layer instead")
	// The registry flags (docs/ocisnap-hook.8.md).
	fs.StringArrayVar(&p.AllowRegistries, "allow-registry", p.AllowRegistries,
		"registry repository prefix (host[:port]/path) docker:// locations must be under, on whole path components (repeatable; none by default)")
	fs.StringVar(t.AuthFile, "registry-auth-file", *t.AuthFile,
		"containers-auth.json(5) file of registry credentials (default: podman's lookup)")
	fs.StringVar(t.CertsDir, "registry-certs-dir", *t.CertsDir,
		"containers-certs.d(5) directory of registry CAs and client certificates")
	fs.StringVar(t.RegistriesConf, "registries-conf", DefaultRegistriesConf,
		"containers-registries.conf(5) file (and its .d drop-ins): a registry with insecure = true is reached without verifying its certificate")
	fs.DurationVar(t.RegistryTimeout, "registry-timeout", *t.RegistryTimeout,
		"bound on all registry operations of one hook run; an export that cannot be pushed in time is spooled")
	fs.StringVar(t.SpoolDir, "spool-dir", *t.SpoolDir,
		"root-only directory where exports to an unreachable registry wait for `ocisnap push --pending`")
}

// DefaultLogFile is the file --log auto writes to when there is no system
// log, for root; a rootless hook writes ocisnap-hook.log in its
// --status-dir.
const DefaultLogFile = "/var/log/ocisnap/ocisnap-hook.log"

// NewFlagSet returns ocisnap-hook's flag set, in the order its usage lists
// them: the administrator's flags, then the log flags and --version. It
// does not print its errors (ContinueOnError): the caller reports them.
func NewFlagSet(t Targets) *pflag.FlagSet {
	fs := pflag.NewFlagSet("ocisnap-hook", pflag.ContinueOnError)
	fs.SortFlags = false
	Register(fs, t)
	fs.StringVar(t.LogFile, "log-file", "", "also append log records (JSON) to this file")
	fs.StringVar(t.LogLevel, "log-level", "warn", "stderr log level: debug, info, warn, error")
	fs.StringVar(t.LogTarget, "log", "auto", "where info and above also go: auto (journald/syslog through /dev/log, else "+
		DefaultLogFile+", rotated at 1 MiB), syslog, none, or an absolute file path (rotated)")
	fs.BoolVar(t.Version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: ocisnap-hook [flags] [stage] < state.json\n\n"+
			"OCI hook: restore, export and boot views driven by io.ocisnap.* annotations.\n"+
			"The stage (prestart, createRuntime, createContainer, poststop) is taken from the\n"+
			"state's status when not given.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// errStageArgs is the usage error of more than one argument.
var errStageArgs = errors.New("at most one argument (the stage) expected")

// Parse parses args (the command line without argv[0]) with fs: flags,
// then at most one argument, the stage, which it returns. -h or --help is
// pflag.ErrHelp.
func Parse(fs *pflag.FlagSet, args []string) (stage string, err error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	switch fs.NArg() {
	case 0:
		return "", nil
	case 1:
		return fs.Arg(0), nil
	}
	return "", errStageArgs
}

// Validate refuses a policy the administrator got wrong (a relative
// directory, view and snapshot directories that overlap): it fails every
// run, before any container's request is looked at (the hook exits 2). It
// cleans s.ExportExcludes in place.
func (s *Settings) Validate() error {
	switch s.IdentityFrom {
	case ocistate.IdentityEngine, ocistate.IdentityNRI:
	default:
		return fmt.Errorf("--identity-from %q: want %s or %s", s.IdentityFrom, ocistate.IdentityEngine, ocistate.IdentityNRI)
	}
	if err := s.Policy.Validate(); err != nil {
		return err
	}
	for i, p := range s.ExportExcludes {
		clean, err := CleanExclude(p)
		if err != nil {
			return fmt.Errorf("--export-exclude: %w", err)
		}
		s.ExportExcludes[i] = clean
	}
	if err := s.validateSpool(); err != nil {
		return err
	}
	return CheckStatusDir(s.StatusDir, s.Policy)
}

// validateSpool refuses a spool directory that is relative or overlaps an
// allowed or view directory: what waits there is root's, never reachable
// by an annotation.
func (s *Settings) validateSpool() error {
	if s.RegistryTimeout <= 0 {
		return fmt.Errorf("--registry-timeout %v: must be positive", s.RegistryTimeout)
	}
	sp := s.SpoolDir
	if sp == "" {
		return nil
	}
	if !filepath.IsAbs(sp) {
		return fmt.Errorf("--spool-dir %q: not an absolute path", sp)
	}
	sp = filepath.Clean(sp)
	for _, set := range []struct {
		flag string
		dirs []string
	}{{"--allow-dir", s.Policy.AllowDirs}, {"--allow-view-dir", s.Policy.ViewDirs}} {
		for _, d := range set.dirs {
			d = filepath.Clean(d)
			if sp == d || strings.HasPrefix(sp, d+"/") || strings.HasPrefix(d, sp+"/") {
				return fmt.Errorf("--spool-dir %q and %s %q overlap: the spool must be outside every snapshot and view directory", sp, set.flag, d)
			}
		}
	}
	return nil
}

// CheckStatusDir refuses a --status-dir that is relative, or that is, is
// inside or holds an allowed or view directory of p: an export or a view
// source named by an annotation could then replace or forge the failure
// records an operator reads.
func CheckStatusDir(d string, p policy.Policy) error {
	if !filepath.IsAbs(d) {
		return fmt.Errorf("--status-dir %q: not an absolute path", d)
	}
	d = filepath.Clean(d)
	for _, o := range append(append([]string(nil), p.AllowDirs...), p.ViewDirs...) {
		o = filepath.Clean(o)
		if within(d, o) || within(o, d) {
			return fmt.Errorf("--status-dir %s overlaps %s, an allowed or view directory: the failure records must be out of annotations' reach", d, o)
		}
	}
	return nil
}

// within reports whether path is dir or below it (both clean).
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// CleanExclude checks one export-exclude path (absolute, not "/", no NUL
// byte) and returns it clean.
func CleanExclude(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty path in the list")
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	case !filepath.IsAbs(p):
		return "", fmt.Errorf("path %q: want an absolute path inside the container", p)
	case filepath.Clean(p) == "/":
		return "", fmt.Errorf("path %q: excluding / would export nothing", p)
	}
	return filepath.Clean(p), nil
}
