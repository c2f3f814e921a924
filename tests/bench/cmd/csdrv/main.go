// Command csdrv runs containers/storage's pkg/archive, what podman, buildah
// and CRI-O use to apply and export layers, as a child of ocisnap-bench:
//
//	csdrv apply ROOT SNAPSHOT            # archive.ApplyLayer (AUFS/OCI whiteouts)
//	csdrv export [-lower DIR]... UPPER OUT  # archive.TarWithOptions, overlay whiteouts
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"go.podman.io/storage/pkg/archive"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "csdrv:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: csdrv apply|export|version ...")
	}
	if os.Args[1] == "version" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, d := range bi.Deps {
				if d.Path == "go.podman.io/storage" {
					fmt.Println(d.Path, d.Version)
				}
			}
		}
		return nil
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ContinueOnError)
	var lowers multi
	fs.Var(&lowers, "lower", "lower directory (repeatable), for opaque directories")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%s: want 2 arguments", os.Args[1])
	}
	switch os.Args[1] {
	case "apply":
		snap, err := os.Open(fs.Arg(1))
		if err != nil {
			return err
		}
		defer snap.Close()
		_, err = archive.ApplyLayer(fs.Arg(0), snap)
		return err
	case "export":
		opts := &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat}
		if len(lowers) > 0 {
			opts.WhiteoutData = []string(lowers)
		}
		rc, err := archive.TarWithOptions(fs.Arg(0), opts)
		if err != nil {
			return err
		}
		defer rc.Close()
		out, err := os.Create(fs.Arg(1))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, rc); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return fmt.Errorf("unknown command %q", os.Args[1])
}
