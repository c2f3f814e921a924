// Package hooks turns an OCI hook invocation (stage + container state) into
// calls of ocisnap's engine: restore, export and boot views. One file per
// action; the rules of which stage does what live in run.go.
package hooks

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/pkg/failurelog"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// Config is what the administrator sets in the hooks.d JSON args.
type Config struct {
	Policy   policy.Policy
	StateDir string
	// StatusDir is the failure log that `ocisnap status` lists
	// (package failurelog): persistent, root-only, outside every allowed
	// and view directory (CheckStatusDir).
	StatusDir string
	// StrictExport makes a failed export fail the hook (and so runc's
	// delete). Off by default: a poststop failure would abort the
	// runtime's remaining poststop hooks.
	StrictExport bool
	// ExportExcludes are the administrator's container paths left out of
	// every export (--export-exclude), besides the container's own
	// io.ocisnap.export-exclude.
	ExportExcludes []string
	// RequireSameImage refuses a restore whose snapshot records another
	// base image than the container's (--require-same-image); without it
	// the difference is logged as a warning.
	RequireSameImage bool
	// Stage forces the stage; empty means "from the state's status".
	Stage string
	// IdentityFrom names where a container's Kubernetes namespace, which
	// replaces {namespace} in --allow-dir values, is read from:
	// ocistate.IdentityEngine (the engine's own key, the default) or
	// ocistate.IdentityNRI (ocisnap-nri's stamp).
	IdentityFrom string
	Logger       *slog.Logger

	// Registry is how docker:// locations are reached (--registry-auth-file,
	// --registry-certs-dir, --spool-dir).
	Registry location.Registry
	// RegistryTimeout bounds all the network operations of one hook run
	// (--registry-timeout).
	RegistryTimeout time.Duration

	// MaxLayers bounds a layered snapshot (io.ocisnap.persist on oci: and
	// docker://): an export that would make it longer writes one whole
	// layer instead (--max-layers).
	MaxLayers int

	// defaultAllowDir is the built-in snapshot directory, which the hook
	// may create (0700) when an export needs it and it is still allowed.
	defaultAllowDir string
}

// DefaultConfig is the configuration with no flags given. For root it is
// /var/lib/ocisnap (snapshots), /var/lib/ocisnap-views (view sources) and
// /run/ocisnap; a rootless user (also when running as uid 0 of the user
// namespace rootless Podman makes) gets per-user defaults:
// ~/.local/share/ocisnap, ~/.local/share/ocisnap-views and
// $XDG_RUNTIME_DIR/ocisnap.
func DefaultConfig() Config {
	cfg := Config{
		Policy:       policy.Default(),
		StateDir:     statefile.DefaultDir,
		StatusDir:    failurelog.DefaultDir,
		IdentityFrom: ocistate.IdentityEngine,
		Logger:       slog.Default(),
		Registry:     location.Registry{SpoolDir: location.DefaultSpoolDir, CertsDir: location.DefaultCertsDir},

		RegistryTimeout: DefaultRegistryTimeout,
		MaxLayers:       DefaultMaxLayers,
	}
	if uid, rootless := hostUID(); rootless {
		state, allow, views := userDefaults(uid)
		cfg.StateDir = state
		cfg.StatusDir = filepath.Join(filepath.Dir(allow), "ocisnap-status")
		cfg.Policy.AllowDirs = []string{allow}
		cfg.Policy.ViewDirs = []string{views}
		cfg.Registry.SpoolDir = filepath.Join(filepath.Dir(allow), "ocisnap-spool")
	}
	cfg.defaultAllowDir = cfg.Policy.AllowDirs[0]
	return cfg
}

// RegisterFlags adds the administrator's flags to fs, bound to cfg.
func RegisterFlags(fs *pflag.FlagSet, cfg *Config) {
	fs.StringArrayVar(&cfg.Policy.AllowDirs, "allow-dir", cfg.Policy.AllowDirs,
		"directory that restore sources and export destinations must resolve inside (repeatable)")
	fs.StringArrayVar(&cfg.Policy.ViewDirs, "allow-view-dir", cfg.Policy.ViewDirs,
		"directory that dir:/file: view sources must resolve inside (repeatable; must not overlap an --allow-dir)")
	fs.Int64Var(&cfg.Policy.MaxBytes, "max-bytes", cfg.Policy.MaxBytes, "most file content bytes a restore may write")
	fs.Int64Var(&cfg.Policy.MaxEntries, "max-entries", cfg.Policy.MaxEntries, "most tar entries a restore may apply")
	fs.Int64Var(&cfg.Policy.MaxExportBytes, "max-export-bytes", cfg.Policy.MaxExportBytes,
		"most file content bytes an export may write (over it the export fails and the previous snapshot stays; 0: no limit)")
	fs.StringArrayVar(&cfg.ExportExcludes, "export-exclude", cfg.ExportExcludes,
		"absolute container path left out of every export, with everything below it (repeatable; added to io.ocisnap.export-exclude)")
	fs.BoolVar(&cfg.Policy.AllowDevices, "allow-devices", cfg.Policy.AllowDevices, "let a restore create device nodes")
	fs.BoolVar(&cfg.Policy.GVisorCompat, "gvisor-compat", cfg.Policy.GVisorCompat,
		"honour gVisor's dev.gvisor.tar.rootfs.upper annotation like io.ocisnap.restore")
	fs.StringVar(&cfg.IdentityFrom, "identity-from", cfg.IdentityFrom,
		"where the Kubernetes namespace for {namespace} in --allow-dir comes from: engine (containerd's or CRI-O's own key) or nri (ocisnap-nri's stamp)")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory of per-container state files")
	fs.StringVar(&cfg.StatusDir, "status-dir", cfg.StatusDir,
		"directory of the failure records that ocisnap status lists (persistent; outside every --allow-dir and --allow-view-dir)")
	fs.BoolVar(&cfg.RequireSameImage, "require-same-image", cfg.RequireSameImage,
		"refuse to restore an oci:/docker:// snapshot recorded on another base image than the container's (by default a warning is logged)")
	fs.BoolVar(&cfg.StrictExport, "strict-export", cfg.StrictExport,
		"exit non-zero when an export fails (by default it is logged and the hook exits 0)")
	fs.IntVar(&cfg.MaxLayers, "max-layers", cfg.MaxLayers,
		"most layers of a persisted oci:/docker:// snapshot; past it, the export writes one whole layer instead")
	registerRegistryFlags(fs, cfg)
}

// DefaultMaxLayers is --max-layers' default.
const DefaultMaxLayers = 16

// CheckStatusDir refuses a --status-dir that is relative, or that is, is
// inside or holds an allowed or view directory: an export or a view source
// named by an annotation could then replace or forge the failure records
// an operator reads.
func (c *Config) CheckStatusDir() error {
	d := c.StatusDir
	if !filepath.IsAbs(d) {
		return fmt.Errorf("--status-dir %q: not an absolute path", d)
	}
	d = filepath.Clean(d)
	for _, o := range append(append([]string(nil), c.Policy.AllowDirs...), c.Policy.ViewDirs...) {
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
