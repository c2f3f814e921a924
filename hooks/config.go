// Package hooks turns an OCI hook invocation (stage + container state) into
// calls of ocisnap's engine: restore, export and boot views. One file per
// action; the rules of which stage does what live in run.go.
package hooks

import (
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
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

// DefaultConfig is the configuration with no flags given (hookcli.Defaults).
// For root it is /var/lib/ocisnap (snapshots), /var/lib/ocisnap-views (view
// sources) and /run/ocisnap; a rootless user (also when running as uid 0 of
// the user namespace rootless Podman makes) gets per-user defaults:
// ~/.local/share/ocisnap, ~/.local/share/ocisnap-views and
// $XDG_RUNTIME_DIR/ocisnap.
func DefaultConfig() Config {
	s := hookcli.Defaults()
	cfg := Config{
		Policy:       s.Policy,
		StateDir:     s.StateDir,
		StatusDir:    s.StatusDir,
		IdentityFrom: s.IdentityFrom,
		Logger:       slog.Default(),
		Registry:     location.Registry{SpoolDir: s.SpoolDir, CertsDir: s.CertsDir},

		RegistryTimeout: s.RegistryTimeout,
		MaxLayers:       s.MaxLayers,
	}
	cfg.defaultAllowDir = cfg.Policy.AllowDirs[0]
	return cfg
}

// targets binds the flags to cfg's fields.
func (c *Config) targets() hookcli.Targets {
	return hookcli.Targets{
		Policy: &c.Policy, ExportExcludes: &c.ExportExcludes,
		IdentityFrom: &c.IdentityFrom, StateDir: &c.StateDir, StatusDir: &c.StatusDir,
		RequireSameImage: &c.RequireSameImage, StrictExport: &c.StrictExport, MaxLayers: &c.MaxLayers,
		AuthFile: &c.Registry.AuthFile, CertsDir: &c.Registry.CertsDir, RegistriesConf: &c.Registry.RegistriesConf,
		SpoolDir: &c.Registry.SpoolDir, RegistryTimeout: &c.RegistryTimeout,
	}
}

// settings returns the flag values of c, for hookcli's checks.
func (c *Config) settings() hookcli.Settings {
	return hookcli.Settings{
		Policy: c.Policy, ExportExcludes: c.ExportExcludes,
		IdentityFrom: c.IdentityFrom, StateDir: c.StateDir, StatusDir: c.StatusDir,
		RequireSameImage: c.RequireSameImage, StrictExport: c.StrictExport, MaxLayers: c.MaxLayers,
		AuthFile: c.Registry.AuthFile, CertsDir: c.Registry.CertsDir, RegistriesConf: c.Registry.RegistriesConf,
		SpoolDir: c.Registry.SpoolDir, RegistryTimeout: c.RegistryTimeout,
	}
}

// RegisterFlags adds the administrator's flags to fs, bound to cfg. They
// are defined once, in hookcli, which the hook's gate parses too.
func RegisterFlags(fs *pflag.FlagSet, cfg *Config) {
	hookcli.Register(fs, cfg.targets())
}

// DefaultMaxLayers is --max-layers' default.
const DefaultMaxLayers = hookcli.DefaultMaxLayers

// CheckStatusDir refuses a --status-dir that is relative, or that is, is
// inside or holds an allowed or view directory: an export or a view source
// named by an annotation could then replace or forge the failure records
// an operator reads.
func (c *Config) CheckStatusDir() error {
	return hookcli.CheckStatusDir(c.StatusDir, c.Policy)
}
