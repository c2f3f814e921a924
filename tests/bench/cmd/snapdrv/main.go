// Command snapdrv runs ocisnap's engine (pkg/layer) the way the hook does,
// as a child process of ocisnap-bench so that its time and peak RSS are
// measured alone:
//
//	snapdrv apply ROOT SNAPSHOT          # layer.Apply, default limits
//	snapdrv export [-format f] [-lower DIR]... UPPER OUT  # layer.Write
//
// Unlike the hook's export, OUT is not fsynced: the peers do not sync either.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
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
		return fmt.Errorf("usage: snapdrv apply|export ...")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ContinueOnError)
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile")
	format := fs.String("format", "overlay", "export whiteout format")
	compression := fs.String("compression", "none", "export compression")
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
		out, err := os.Create(fs.Arg(1))
		if err != nil {
			return err
		}
		opts := []layer.WriteOpt{layer.WithFormat(layer.Format(*format)), layer.WithCompression(layer.Compression(*compression))}
		if len(lowers) > 0 {
			opts = append(opts, layer.WithLowers(lowers...))
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

// writerOnly is the hook's sink (pkg/location's temporary file): Write,
// and ReadFrom for file content.
type writerOnly struct{ f *os.File }

func (w writerOnly) Write(p []byte) (int, error)         { return w.f.Write(p) }
func (w writerOnly) ReadFrom(r io.Reader) (int64, error) { return w.f.ReadFrom(r) }
