package hooks

import (
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
)

// CommandLine is ocisnap-hook's command line: a hooks.d file's hook.args
// after argv[0]. cmd/ocisnap-hook-engine runs the hook with it, and Explain
// (for `ocisnap hooks`) parses a hooks.d file's arguments with the same
// flag set, so that the dry run accepts and refuses exactly what the hook
// does. The flags are defined in hookcli, which the hook's gate
// (cmd/ocisnap-hook) parses too.
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

// NewCommandLine returns ocisnap-hook's flags, in the order its usage
// lists them, bound to a CommandLine holding the defaults.
func NewCommandLine() *CommandLine {
	c := &CommandLine{Config: DefaultConfig()}
	t := c.Config.targets()
	t.LogFile, t.LogLevel, t.LogTarget, t.Version = &c.LogFile, &c.LogLevel, &c.LogTarget, &c.Version
	c.Flags = hookcli.NewFlagSet(t)
	return c
}

// Parse parses args (the command line without argv[0]): flags, then at
// most one argument, the stage, which sets Config.Stage. -h or --help is
// pflag.ErrHelp; any other error is a usage error or a policy the hook
// refuses (the hook exits 2).
func (c *CommandLine) Parse(args []string) error {
	stage, err := hookcli.Parse(c.Flags, args)
	if err != nil {
		return err
	}
	if c.Flags.NArg() == 1 {
		c.Config.Stage = stage
	}
	s := c.Config.settings()
	return s.Validate() // cleans the shared ExportExcludes in place
}

// DefaultLogFile is the file --log auto writes to when there is no system
// log, for root; a rootless hook writes ocisnap-hook.log in its
// --status-dir.
const DefaultLogFile = hookcli.DefaultLogFile

// DefaultLogFile returns the file --log auto falls back to.
func (c *CommandLine) DefaultLogFile() string {
	if _, rootless := hostUID(); rootless {
		return filepath.Join(c.Config.StatusDir, "ocisnap-hook.log")
	}
	return DefaultLogFile
}
