package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/logging"
	"github.com/ocisnap/ocisnap/internal/version"
	"github.com/ocisnap/ocisnap/pkg/location"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the operation failed
	exitUsage = 2 // bad command line
)

// app is what every subcommand shares.
type app struct {
	stdin          io.Reader
	stdout, stderr *os.File
	log            *slog.Logger
	logLevel       string
	reg            location.Registry // --registry-auth-file, --registry-certs-dir, --spool-dir
}

// usageError is a command line error (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// usageArgs makes a cobra argument validator's error a usage error.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// interrupted is the cancel cause of the context when a signal arrives.
type interrupted struct{ sig unix.Signal }

func (i *interrupted) Error() string { return "interrupted by " + signalName(i.sig) }

func signalName(s unix.Signal) string {
	switch s {
	case unix.SIGINT:
		return "SIGINT"
	case unix.SIGTERM:
		return "SIGTERM"
	case unix.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "ocisnap",
		Short: "Snapshot, apply, inspect and convert container writable layers",
		Long: "ocisnap works on the snapshots that the ocisnap-hook OCI hook restores and exports:\n" +
			"tar streams of a container's writable (overlay upper) layer. It uses the same engine\n" +
			"as the hook. See ocisnap(1) and ocisnap-hook(8).",
		Version:       version.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			log, _, err := logging.New(a.stderr, a.logLevel, "")
			if err != nil {
				return usageError{err}
			}
			a.log = log
			slog.SetDefault(log)
			return nil
		},
	}
	root.SetVersionTemplate(version.String("ocisnap") + "\n")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	registryFlags(root.PersistentFlags(), a)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.CompletionOptions.HiddenDefaultCmd = true
	root.AddCommand(
		newExportCmd(a),
		newApplyCmd(a),
		newDiffCmd(a),
		newInspectCmd(a),
		newConvertCmd(a),
		newSquashCmd(a),
		newHooksCmd(a),
		newGCCmd(a),
		newPushCmd(a),
		newPullCmd(a),
		newLsCmd(a),
		newStatusCmd(a),
		newVersionCmd(a),
	)
	return root
}

// run runs the command line args and returns the exit status.
func run(args []string) int {
	return runApp(&app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, log: slog.Default()}, args)
}

func runApp(a *app, args []string) int {
	// SIGINT/SIGTERM/SIGHUP cancel the context (with the signal as its
	// cause); commands clean up (thaw, remove temporary files) and return.
	// Later signals are ignored so the clean-up is not cut short.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		if s, ok := (<-sigs).(unix.Signal); ok {
			cancel(&interrupted{s})
		}
	}()
	// A reader of our stdout that goes away must fail the write (EPIPE),
	// not kill the process before it has thawed a container.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)

	root := newRoot(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	name := "ocisnap"
	if cmd != nil && cmd != root {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(a.stderr, "%s: %s\n", name, oneLine(err))
	var ue usageError
	var in *interrupted
	switch {
	case errors.As(err, &ue) || isCobraUsage(err):
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", name)
		return exitUsage
	case errors.As(context.Cause(ctx), &in):
		return 128 + int(in.sig)
	}
	return exitError
}

// isCobraUsage recognises the usage errors cobra makes itself.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "accepts ", "requires ", "invalid argument"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
