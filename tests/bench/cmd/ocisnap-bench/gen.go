package main

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// A workload is an image (the overlay's lower) and a container's changes
// to it, made through a real overlay mount so that the upper holds real
// whiteouts and opaque directories. Everything is generated from the seed:
// names, sizes, content, modes, owners and file mtimes.
type workload struct {
	name    string
	desc    string
	fsSize  int64  // loop filesystem size
	force   string // "tmpfs" or "disk": the backing -backing asks for ("" prepare's choice)
	image   func(g *gen, dir string) error
	changes func(g *gen, merged string) error
	axis    string // scaling plot: "entries" or "bytes", "" if not a point
	// filled in by prepare
	entries int64 // tar entries in the snapshot
	bytes   int64 // file content bytes in the snapshot
	upper   int64 // bytes in the upper (for export)
	backing string

	// durableOnly: measure only the durable export tools (the disk pass
	// of -durable-disk).
	durableOnly bool
}

type gen struct {
	rng   *rand.Rand
	cc    *rand.ChaCha8
	buf   []byte
	vocab [][]byte // textFile's words
	n     int      // files written, for modes, owners and times
	base  time.Time
}

func newGen(seed uint64, name string) *gen {
	h := fnv.New64a()
	h.Write([]byte(name))
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], h.Sum64())
	cc := rand.NewChaCha8(key)
	return &gen{rng: rand.New(rand.NewPCG(seed, h.Sum64())), cc: cc, buf: make([]byte, 1<<20), base: time.Unix(1_700_000_000, 0)}
}

// file writes a file of size random bytes with the generator's next mode,
// owner and mtime: mostly 0644 root files, every 10th 0755, every 7th owned
// by 1000:1000.
func (g *gen) file(p string, size int64) error { return g.fileOf(p, size, false) }

// textFile is file with text instead of random bytes: words of a fixed
// vocabulary drawn at random, which zstd compresses about 3×, as it does
// the text and code of real layers (matches, entropy tables, the window
// in use: what random bytes never exercise).
func (g *gen) textFile(p string, size int64) error { return g.fileOf(p, size, true) }

func (g *gen) fileOf(p string, size int64, text bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for left := size; left > 0; {
		chunk := g.buf[:min(left, int64(len(g.buf)))]
		if text {
			g.words(chunk)
		} else {
			g.cc.Read(chunk)
		}
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return err
		}
		left -= int64(len(chunk))
	}
	if err := f.Close(); err != nil {
		return err
	}
	g.n++
	if g.n%10 == 0 {
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	if g.n%7 == 0 {
		if err := os.Lchown(p, 1000, 1000); err != nil {
			return err
		}
	}
	t := g.base.Add(time.Duration(g.n)*time.Second + time.Duration(g.n*7919)%time.Second)
	return os.Chtimes(p, t, t)
}

func (g *gen) size(lo, hi int64) int64 { return lo + g.rng.Int64N(hi-lo+1) }

// words fills b with words of the generator's vocabulary (made on first
// use: 4,096 words of 2-12 lowercase letters), separated by spaces and, now
// and then, newlines.
func (g *gen) words(b []byte) {
	if g.vocab == nil {
		g.vocab = make([][]byte, 4096)
		for i := range g.vocab {
			w := make([]byte, 2+g.rng.IntN(11))
			for j := range w {
				w[j] = 'a' + byte(g.rng.IntN(26))
			}
			g.vocab[i] = w
		}
	}
	for i := 0; i < len(b); {
		i += copy(b[i:], g.vocab[g.rng.IntN(len(g.vocab))])
		if i < len(b) {
			if g.rng.IntN(12) == 0 {
				b[i] = '\n'
			} else {
				b[i] = ' '
			}
			i++
		}
	}
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// etc is a small base image: a few config files.
func etcImage(g *gen, dir string) error {
	if err := mkdirs(filepath.Join(dir, "etc")); err != nil {
		return err
	}
	for i := 0; i < 50; i++ {
		if err := g.file(filepath.Join(dir, "etc", fmt.Sprintf("conf%02d", i)), g.size(100, 4000)); err != nil {
			return err
		}
	}
	return nil
}

// smallWorkload: files of 1–16 KiB in dirs directories of perDir files,
// plus deletions of image files and opaque (deleted and recreated)
// image directories.
func smallWorkload(name string, dirs, perDir, imgDirs, deletions, opaque int) *workload {
	const imgPerDir = 20
	return &workload{
		name:   name,
		desc:   fmt.Sprintf("%d files of 1–16 KiB in %d dirs, %d deletions of image files, %d opaque dirs", dirs*perDir, dirs, deletions, opaque),
		fsSize: 4 << 30,
		image: func(g *gen, dir string) error {
			for d := 0; d < imgDirs; d++ {
				p := filepath.Join(dir, "img", fmt.Sprintf("d%03d", d))
				if err := mkdirs(p); err != nil {
					return err
				}
				for f := 0; f < imgPerDir; f++ {
					if err := g.file(filepath.Join(p, fmt.Sprintf("f%03d", f)), g.size(1024, 16384)); err != nil {
						return err
					}
				}
			}
			for d := 0; d < opaque; d++ {
				p := filepath.Join(dir, "opq", fmt.Sprintf("d%02d", d))
				if err := mkdirs(p); err != nil {
					return err
				}
				for f := 0; f < 10; f++ {
					if err := g.file(filepath.Join(p, fmt.Sprintf("old%02d", f)), g.size(1024, 16384)); err != nil {
						return err
					}
				}
			}
			return nil
		},
		changes: func(g *gen, m string) error {
			for d := 0; d < dirs; d++ {
				p := filepath.Join(m, "app", fmt.Sprintf("d%04d", d))
				if err := mkdirs(p); err != nil {
					return err
				}
				for f := 0; f < perDir; f++ {
					if err := g.file(filepath.Join(p, fmt.Sprintf("f%03d", f)), g.size(1024, 16384)); err != nil {
						return err
					}
				}
			}
			for _, i := range g.rng.Perm(imgDirs * imgPerDir)[:deletions] {
				if err := os.Remove(filepath.Join(m, "img", fmt.Sprintf("d%03d", i/imgPerDir), fmt.Sprintf("f%03d", i%imgPerDir))); err != nil {
					return err
				}
			}
			for d := 0; d < opaque; d++ {
				p := filepath.Join(m, "opq", fmt.Sprintf("d%02d", d))
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				if err := mkdirs(p); err != nil {
					return err
				}
				if err := g.file(filepath.Join(p, "new"), g.size(1024, 16384)); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// tinyWorkload: n files under 1 KiB, like a node_modules install: n/100
// packages, each a directory of 50 files and a lib/ of 50.
func tinyWorkload(name string, n int) *workload {
	pkgs := max(n/100, 1)
	return &workload{
		name:   name,
		desc:   fmt.Sprintf("%d files of 1–1023 bytes in %d dirs (node_modules-like)", pkgs*100, 2*pkgs),
		fsSize: 4 << 30,
		image:  etcImage,
		changes: func(g *gen, m string) error {
			for p := 0; p < pkgs; p++ {
				pd := filepath.Join(m, "node_modules", fmt.Sprintf("pkg%05d", p))
				for _, d := range []string{pd, filepath.Join(pd, "lib")} {
					if err := mkdirs(d); err != nil {
						return err
					}
					for f := 0; f < 50; f++ {
						if err := g.file(filepath.Join(d, fmt.Sprintf("m%02d.js", f)), g.size(1, 1023)); err != nil {
							return err
						}
					}
				}
			}
			return nil
		},
	}
}

// largeWorkload: count files of total/count random bytes.
func largeWorkload(name string, count int, total int64) *workload {
	return &workload{
		name:    name,
		desc:    fmt.Sprintf("%d files of %d MiB", count, total/int64(count)>>20),
		fsSize:  max(16<<30, 6*total+(2<<30)),
		image:   etcImage,
		changes: largeChanges(count, total/int64(count), nil),
	}
}

// largeChanges writes count files of size bytes in /data: random bytes,
// or text (textFile) for the files i where text(i) says so.
func largeChanges(count int, size int64, text func(i int) bool) func(g *gen, m string) error {
	return func(g *gen, m string) error {
		if err := mkdirs(filepath.Join(m, "data")); err != nil {
			return err
		}
		for i := 0; i < count; i++ {
			write := g.file
			if text != nil && text(i) {
				write = g.textFile
			}
			if err := write(filepath.Join(m, "data", fmt.Sprintf("blob%d", i)), size); err != nil {
				return err
			}
		}
		return nil
	}
}

// lowerWorkload: an image of imgBytes in 256 KiB files (64 dirs), and an
// upper of 1 MiB (64 new 16 KiB files in the image's dirs) plus 8
// deletions: export must read only the upper.
func lowerWorkload(name string, imgBytes int64) *workload {
	const fileSize = 256 << 10
	files := int(imgBytes / fileSize)
	return &workload{
		name:   name,
		desc:   fmt.Sprintf("1 MiB upper (64 files, 8 deletions) over a %d MiB image of %d files", imgBytes>>20, files),
		fsSize: 8 << 30,
		image: func(g *gen, dir string) error {
			for i := 0; i < files; i++ {
				d := filepath.Join(dir, "usr", fmt.Sprintf("d%02d", i%64))
				if i < 64 {
					if err := mkdirs(d); err != nil {
						return err
					}
				}
				if err := g.file(filepath.Join(d, fmt.Sprintf("f%05d", i)), fileSize); err != nil {
					return err
				}
			}
			return nil
		},
		changes: func(g *gen, m string) error {
			for i := 0; i < 64; i++ {
				if err := g.file(filepath.Join(m, "usr", fmt.Sprintf("d%02d", i), fmt.Sprintf("new%02d", i)), 16<<10); err != nil {
					return err
				}
			}
			for i := 0; i < 8; i++ {
				if err := os.Remove(filepath.Join(m, "usr", fmt.Sprintf("d%02d", i%64), fmt.Sprintf("f%05d", i))); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
