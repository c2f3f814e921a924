// Command snapdrv runs ocisnap's engine (pkg/layer) the way the hook does,
// as a child process of ocisnap-bench so that its time and peak RSS are
// measured alone:
//
//	snapdrv apply ROOT SNAPSHOT          # layer.Apply, default limits
//	snapdrv export [-format f] [-lower DIR]... [-durable] UPPER OUT  # layer.Write
//	snapdrv record|persist|statwalk ...  # io.ocisnap.persist (persist.go)
//
// Without -durable OUT is not fsynced (the CPU view: the plain peers do not
// sync either). With -durable it is written as the hook writes a snapshot:
// through pkg/location's file sink (a temporary file beside OUT, fsync,
// rename over OUT, fsync of the directory).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "snapdrv:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: snapdrv apply|export|record|persist|statwalk ...")
	}
	if ok, err := runPersist(os.Args[1], os.Args[2:]); ok {
		return err
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ContinueOnError)
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile")
	format := fs.String("format", "overlay", "export whiteout format")
	compression := fs.String("compression", "none", "export compression")
	durable := fs.Bool("durable", false, "export: write OUT as the hook does (pkg/location's atomic file sink)")
	var lowers multi
	fs.Var(&lowers, "lower", "lower directory, top first (repeatable)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%s: want 2 arguments, got %d", os.Args[1], fs.NArg())
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	switch os.Args[1] {
	case "apply":
		root, err := os.OpenFile(fs.Arg(0), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer root.Close()
		snap, err := os.Open(fs.Arg(1))
		if err != nil {
			return err
		}
		defer snap.Close()
		_, err = layer.Apply(ctx, root, snap)
		return err
	case "export":
		opts := []layer.WriteOpt{layer.WithFormat(layer.Format(*format)), layer.WithCompression(layer.Compression(*compression))}
		if len(lowers) > 0 {
			opts = append(opts, layer.WithLowers(lowers...))
		}
		if *durable {
			return exportDurable(ctx, fs.Arg(0), fs.Arg(1), opts)
		}
		out, err := os.Create(fs.Arg(1))
		if err != nil {
			return err
		}
		// Through a sink like the hook's, not the *os.File itself.
		if _, err := layer.Write(ctx, writerOnly{out}, fs.Arg(0), opts...); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return fmt.Errorf("unknown command %q", os.Args[1])
}

// exportDurable writes the snapshot of upper to out through the file sink
// the hook uses (location.ParseSink of a path, the directory allowed by
// the policy), committed like the hook's poststop export.
func exportDurable(ctx context.Context, upper, out string, opts []layer.WriteOpt) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	sink, err := location.ParseSink(abs, &policy.Policy{AllowDirs: []string{filepath.Dir(abs)}})
	if err != nil {
		return err
	}
	p, err := sink.Create(ctx)
	if err != nil {
		return err
	}
	if _, err := layer.Write(ctx, p, upper, opts...); err != nil {
		return errors.Join(err, p.Abort())
	}
	return p.Commit()
}

// writerOnly is the hook's sink (pkg/location's temporary file): Write,
// and ReadFrom for file content.
type writerOnly struct{ f *os.File }

func (w writerOnly) Write(p []byte) (int, error)         { return w.f.Write(p) }
func (w writerOnly) ReadFrom(r io.Reader) (int64, error) { return w.f.ReadFrom(r) }
