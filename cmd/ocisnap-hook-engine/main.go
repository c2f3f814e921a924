// Command ocisnap-hook-engine is the engine of ocisnap's OCI runtime hook: it
// restores a snapshot onto a new container's rootfs, records and exports its
// writable layer at poststop, and manages read-only boot views. The hook's
// gate, ocisnap-hook, which the runtime runs for every container, execs it
// with the same arguments and the container state on stdin when the state
// asks something of ocisnap; see ocisnap-hook(8).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/internal/logging"
	"github.com/ocisnap/ocisnap/internal/version"
)

func main() {
	cl := hooks.NewCommandLine()
	if err := cl.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\nRun 'ocisnap-hook --help' for usage.\n", err)
		os.Exit(2)
	}
	if cl.Version {
		fmt.Println(version.String("ocisnap-hook"))
		return
	}
	cfg := cl.Config
	logger, closeLog, err := logging.Open(os.Stderr, logging.Options{
		Level: cl.LogLevel, File: cl.LogFile, Target: cl.LogTarget,
		DefaultFile: cl.DefaultLogFile(), Tag: "ocisnap-hook",
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\n", err)
		os.Exit(2)
	}
	cfg.Logger = logger

	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	err = hooks.Run(ctx, cfg, os.Stdin)
	stop()
	closeLog()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-hook: %v\n", err)
		os.Exit(1)
	}
}
