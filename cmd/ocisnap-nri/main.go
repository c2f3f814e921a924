// Command ocisnap-nri is ocisnap's NRI plugin: it adds the hooks of the
// installed hooks.d file to the containers of Kubernetes pods that ask for
// ocisnap, on containerd (which has no hooks.d) and CRI-O. See
// ocisnap-nri(8) and package nri.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/internal/version"
	"github.com/ocisnap/ocisnap/pkg/nri"
)

func main() {
	fs := pflag.NewFlagSet("ocisnap-nri", pflag.ContinueOnError)
	fs.SortFlags = false
	socket := fs.String("socket", api.DefaultSocketPath, "NRI socket of the runtime")
	dirs := fs.StringArray("hooks-dir", nri.DefaultHooksDirs, "hooks.d directory whose ocisnap*.json files give the hooks (repeatable; later ones override files of the same name)")
	name := fs.String("name", "ocisnap", "plugin name to register with")
	idx := fs.String("idx", "10", "plugin index to register with (the order among plugins)")
	level := fs.String("log-level", "info", "stderr log level: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: ocisnap-nri [flags]\n\nNRI plugin: adds ocisnap's hooks.d hooks to annotated Kubernetes containers.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "ocisnap-nri: %v\nRun 'ocisnap-nri --help' for usage.\n", err)
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ocisnap-nri: unexpected argument %q\n", fs.Arg(0))
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(version.String("ocisnap-nri"))
		return
	}
	// NRI plugins log with logrus to stderr (the stub does, too).
	log := logrus.StandardLogger()
	log.SetOutput(os.Stderr)
	log.SetFormatter(&logrus.TextFormatter{PadLevelText: true})
	lv, err := logrus.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocisnap-nri: --log-level: %v\n", err)
		os.Exit(2)
	}
	log.SetLevel(lv)

	opts := []stub.Option{stub.WithSocketPath(*socket)}
	// A plugin started by containerd from /opt/nri/plugins gets its name
	// and index in the environment; the stub refuses to have them set twice.
	if os.Getenv(api.PluginIdxEnvVar) == "" {
		opts = append(opts, stub.WithPluginIdx(*idx))
	}
	if os.Getenv(api.PluginNameEnvVar) == "" {
		opts = append(opts, stub.WithPluginName(*name))
	}
	p := &nri.Plugin{Hooks: nri.NewHooksDir(*dirs, log), Log: log}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := nri.Serve(ctx, p, opts...); err != nil {
		log.Errorf("ocisnap-nri: %v", err)
		os.Exit(1)
	}
}
