// Command ocisnap-hook is the OCI runtime hook of ocisnap, as the runtime
// runs it for every container: a thin gate that parses the hook's command
// line, reads the container state and, when the container asks something
// of ocisnap, execs the engine (ocisnap-hook-engine, beside it) with the
// same arguments and the same state on stdin. When it asks nothing (by
// hooks.Run's own rule, hookcli.Noop), the gate exits 0 having touched
// nothing, without paying the engine's start-up (the package initialisers
// of the registry stack): it links only package hookcli. See
// ocisnap-hook(8).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
	"github.com/ocisnap/ocisnap/internal/version"
)

func main() {
	s := hookcli.Defaults()
	t := s.Targets()
	var logFile, logLevel, logTarget string
	var showVersion bool
	t.LogFile, t.LogLevel, t.LogTarget, t.Version = &logFile, &logLevel, &logTarget, &showVersion
	fs := hookcli.NewFlagSet(t)
	stage, err := hookcli.Parse(fs, os.Args[1:])
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\nRun 'ocisnap-hook --help' for usage.\n", err)
		os.Exit(2)
	}
	if showVersion {
		fmt.Println(version.String("ocisnap-hook"))
		return
	}
	engine, err := enginePath()
	if err == nil && !quietLog(logLevel, logTarget) {
		// A log the engine opens at once (syslog, a file target) or a
		// level to check: the engine decides, as before the gate.
		err = execEngine(engine, os.Args, os.Environ())
	}
	if err == nil && logFile != "" {
		// The engine opens (creates) --log-file before it reads the state:
		// so does the gate, failing alike.
		var f *os.File
		if f, err = os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "ocisnap-hook: --log-file: %v\n", err)
			os.Exit(2)
		}
		f.Close()
	}
	if err == nil {
		err = gate(os.Stdin, stage, &s, engine, os.Args, os.Environ())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\n", err)
		os.Exit(1)
	}
}

// quietLog reports whether the log options are ones whose opening neither
// fails nor touches anything: a plain level name, and --log auto (opened at
// the first record, which a no-op never writes) or none. Anything else is
// the engine's to open or refuse (internal/logging.Open), the gate then
// handing every run to it.
func quietLog(level, target string) bool {
	switch strings.ToUpper(level) {
	case "DEBUG", "INFO", "WARN", "ERROR", "": // "": warn
	default:
		return false
	}
	return target == "auto" || target == "none" || target == ""
}
