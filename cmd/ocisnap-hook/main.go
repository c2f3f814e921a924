// Command ocisnap-hook is the OCI runtime hook of ocisnap: it restores a
// snapshot onto a new container's rootfs, records and exports its writable
// layer at poststop, and manages read-only boot views. The runtime gives it
// the container state on stdin; see ocisnap-hook(8).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/internal/logging"
	"github.com/ocisnap/ocisnap/internal/version"
)

func main() {
	cfg := hooks.DefaultConfig()
	fs := pflag.NewFlagSet("ocisnap-hook", pflag.ContinueOnError)
	fs.SortFlags = false
	hooks.RegisterFlags(fs, &cfg)
	logFile := fs.String("log-file", "", "also append log records (JSON) to this file")
	logLevel := fs.String("log-level", "warn", "stderr log level: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: ocisnap-hook [flags] [stage] < state.json\n\n"+
			"OCI hook: restore, export and boot views driven by io.ocisnap.* annotations.\n"+
			"The stage (prestart, createRuntime, createContainer, poststop) is taken from the\n"+
			"state's status when not given.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(version.String("ocisnap-hook"))
		return
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(os.Stderr, "ocisnap-hook: at most one argument (the stage) expected")
		os.Exit(2)
	}
	if fs.NArg() == 1 {
		cfg.Stage = fs.Arg(0)
	}
	// A policy the administrator got wrong (a relative directory, view and
	// snapshot directories that overlap) fails every run, before any
	// container's request is looked at.
	if err := cfg.Policy.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\n", err)
		os.Exit(2)
	}
	logger, closeLog, err := logging.New(os.Stderr, *logLevel, *logFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\n", err)
		os.Exit(2)
	}
	cfg.Logger = logger

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err = hooks.Run(ctx, cfg, os.Stdin)
	stop()
	closeLog()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\n", err)
		os.Exit(1)
	}
}
