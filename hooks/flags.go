package hooks

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// CommandLine is ocisnap-hook's command line: a hooks.d file's hook.args
// after argv[0]. cmd/ocisnap-hook runs the hook with it, and Explain (for
// `ocisnap hooks`) parses a hooks.d file's arguments with the same flag
// set, so that the dry run accepts and refuses exactly what the hook does.
type CommandLine struct {
	// Flags is the flag set, bound to the fields below. It does not print
	// its errors (ContinueOnError): the caller reports them.
	Flags *pflag.FlagSet
	// Config starts as DefaultConfig; the administrator's flags
	// (RegisterFlags) and the stage argument change it.
	Config Config
	// LogFile and LogLevel are for internal/logging.Open: a JSON log file
	// (none by default) and the stderr level (warn by default).
	LogFile, LogLevel string
	// LogTarget is the default log (--log): auto (the system log through
	// /dev/log when there is one, else DefaultLogFile), syslog, none, or a
	// file.
	LogTarget string
	// Version asks for the version and nothing else.
	Version bool
}

// errStageArgs is the usage error of more than one argument.
var errStageArgs = errors.New("at most one argument (the stage) expected")

// NewCommandLine returns ocisnap-hook's flags, in the order its usage
// lists them, bound to a CommandLine holding the defaults.
func NewCommandLine() *CommandLine {
	c := &CommandLine{Config: DefaultConfig()}
	fs := pflag.NewFlagSet("ocisnap-hook", pflag.ContinueOnError)
	fs.SortFlags = false
	RegisterFlags(fs, &c.Config)
	fs.StringVar(&c.LogFile, "log-file", "", "also append log records (JSON) to this file")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "stderr log level: debug, info, warn, error")
	fs.StringVar(&c.LogTarget, "log", "auto", "where info and above also go: auto (journald/syslog through /dev/log, else "+
		DefaultLogFile+", rotated at 1 MiB), syslog, none, or an absolute file path (rotated)")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	c.Flags = fs
	return c
}

// Parse parses args (the command line without argv[0]): flags, then at
// most one argument, the stage, which sets Config.Stage. -h or --help is
// pflag.ErrHelp; any other error is a usage error or a policy the hook
// refuses (the hook exits 2).
func (c *CommandLine) Parse(args []string) error {
	if err := c.Flags.Parse(args); err != nil {
		return err
	}
	switch c.Flags.NArg() {
	case 0:
	case 1:
		c.Config.Stage = c.Flags.Arg(0)
	default:
		return errStageArgs
	}
	// A policy the administrator got wrong (a relative directory, view and
	// snapshot directories that overlap) fails every run, before any
	// container's request is looked at.
	switch c.Config.IdentityFrom {
	case ocistate.IdentityEngine, ocistate.IdentityNRI:
	default:
		return fmt.Errorf("--identity-from %q: want %s or %s", c.Config.IdentityFrom, ocistate.IdentityEngine, ocistate.IdentityNRI)
	}
	if err := c.Config.Policy.Validate(); err != nil {
		return err
	}
	for i, p := range c.Config.ExportExcludes {
		clean, err := cleanExclude(p)
		if err != nil {
			return fmt.Errorf("--export-exclude: %w", err)
		}
		c.Config.ExportExcludes[i] = clean
	}
	if err := c.Config.validateSpool(); err != nil {
		return err
	}
	return c.Config.CheckStatusDir()
}

// DefaultLogFile is the file --log auto writes to when there is no system
// log, for root; a rootless hook writes ocisnap-hook.log in its
// --status-dir.
const DefaultLogFile = "/var/log/ocisnap/ocisnap-hook.log"

// DefaultLogFile returns the file --log auto falls back to.
func (c *CommandLine) DefaultLogFile() string {
	if _, rootless := hostUID(); rootless {
		return filepath.Join(c.Config.StatusDir, "ocisnap-hook.log")
	}
	return DefaultLogFile
}
