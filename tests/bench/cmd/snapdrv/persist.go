package main

// The persist subcommands drive what the hook does for
// io.ocisnap.persist=oci:DIR (hooks/export.go): the upper record at
// createRuntime (pkg/upperrec) and the stop's export, a delta layer added
// to the restored manifest or a whole layer; and the stat floor of the
// delta export.
//
//	snapdrv record -engine UPPER PRE                    # before the restore: the runtime's stubs
//	snapdrv record [-pre PRE] [-location LOC] UPPER REC # after it: what the restore put there
//	snapdrv persist [-record REC] [-stats FILE] [-lower DIR]... UPPER LOC
//	snapdrv statwalk UPPER                              # getdents + fstatat of every entry

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/upperrec"
)

// runPersist runs the record, persist and statwalk subcommands; ok is
// false for another command.
func runPersist(cmd string, args []string) (ok bool, err error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	engine := fs.Bool("engine", false, "record: every entry is the runtime's (the record before a restore)")
	pre := fs.String("pre", "", "record: the record taken before the restore")
	loc := fs.String("location", "", "record: the location restored (its manifest digest, layers and format go in the header)")
	rec := fs.String("record", "", "persist: the upper record; without it a whole layer is written")
	statsFile := fs.String("stats", "", "persist: write the location's layer sizes here (JSON)")
	compression := fs.String("compression", string(layer.CompressionZstd), "persist: compression")
	var lowers multi
	fs.Var(&lowers, "lower", "persist: lower directory, top first (repeatable)")
	switch cmd {
	case "record", "persist", "statwalk":
	default:
		return false, nil
	}
	if err := fs.Parse(args); err != nil {
		return true, err
	}
	want := map[string]int{"record": 2, "persist": 2, "statwalk": 1}[cmd]
	if fs.NArg() != want {
		return true, fmt.Errorf("%s: want %d arguments, got %d", cmd, want, fs.NArg())
	}
	ctx := context.Background()
	switch cmd {
	case "record":
		if *engine {
			return true, upperrec.Take(fs.Arg(1), fs.Arg(0), upperrec.Header{}, "", true)
		}
		var hdr upperrec.Header
		if *loc != "" {
			snap, err := openLocation(ctx, *loc)
			if err != nil {
				return true, err
			}
			hdr = upperrec.Header{Base: snap.Digest.String(), Layers: len(snap.Layers), Format: string(layer.FormatOverlay)}
			if snap.Config != nil && snap.Config.Format != "" {
				hdr.Format = snap.Config.Format
			}
			snap.Close()
		}
		return true, upperrec.Take(fs.Arg(1), fs.Arg(0), hdr, *pre, false)
	case "statwalk":
		n, err := statWalk(fs.Arg(0))
		fmt.Println(n)
		return true, err
	}
	opts := []layer.WriteOpt{layer.WithCompression(layer.Compression(*compression))}
	if len(lowers) > 0 {
		opts = append(opts, layer.WithLowers(lowers...))
	}
	if err := persist(ctx, fs.Arg(0), fs.Arg(1), *rec, opts); err != nil {
		return true, err
	}
	if *statsFile == "" {
		return true, nil
	}
	snap, err := openLocation(ctx, fs.Arg(1))
	if err != nil {
		return true, err
	}
	defer snap.Close()
	var sizes []int64
	for _, l := range snap.Layers {
		sizes = append(sizes, l.Desc.Size)
	}
	data, _ := json.Marshal(map[string]any{"layers": sizes})
	return true, os.WriteFile(*statsFile, data, 0o644)
}

// layoutPolicy allows the oci: layout loc names (the bench's own).
func layoutPolicy(loc string) (*policy.Policy, error) {
	dir, _, err := location.ParseLayoutRef(loc)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &policy.Policy{AllowDirs: []string{filepath.Dir(abs)}}, nil
}

func openLocation(ctx context.Context, loc string) (*location.Snapshot, error) {
	p, err := layoutPolicy(loc)
	if err != nil {
		return nil, err
	}
	src, err := location.ParseSource(loc, p)
	if err != nil {
		return nil, err
	}
	return src.Open(ctx)
}

// persist is the hook's export for io.ocisnap.persist (hooks/export.go,
// export and planExport): with a record of this upper, only what changed
// since, as a layer on the manifest restored; without, a whole layer.
func persist(ctx context.Context, upper, loc, rec string, opts []layer.WriteOpt) error {
	p, err := layoutPolicy(loc)
	if err != nil {
		return err
	}
	sink, err := location.ParseSink(loc, p)
	if err != nil {
		return err
	}
	location.Describe(sink, location.Info{Format: string(layer.FormatOverlay), Compression: string(layer.CompressionZstd)})
	var pend location.Pending
	if rec != "" {
		r, hdr, err := upperrec.Open(rec)
		if err != nil {
			return err
		}
		defer r.Close()
		if !hdr.Matches(upper) || hdr.Base == "" {
			return fmt.Errorf("record %s: not of %s, or of no restored manifest", rec, upper)
		}
		opts = append(opts, layer.WithDelta(upperrec.NewDelta(r, true)))
		a, ok := sink.(location.Appender)
		if !ok {
			return errors.New("location cannot add a layer")
		}
		if pend, err = a.CreateOn(ctx, digest.Digest(hdr.Base)); err != nil {
			return err
		}
	} else if pend, err = sink.Create(ctx); err != nil {
		return err
	}
	return hooks.WriteSnapshot(ctx, pend, upper, opts...)
}

// statWalk is the floor of a delta export: every directory read once
// (getdents) and every entry stat'ed once (fstatat), in the export's order,
// and nothing else.
func statWalk(upper string) (int, error) {
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	err = statDir(fd, make([]byte, 64<<10), &n)
	return n, err
}

func statDir(fd int, buf []byte, n *int) error {
	var names []string
	for {
		k, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if k <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:k], -1, names)
	}
	sort.Strings(names)
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*n++
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		err = statDir(cfd, buf, n)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
