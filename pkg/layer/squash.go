package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrSquashOrder is wrapped when a layer given to Squash is not in Write's
// walk order (ComparePaths), as every layer ocisnap writes is.
var ErrSquashOrder = errors.New("layer: layer entries are not in walk order")

// ErrSquashLink is wrapped when a hard link in a layer names a file a
// later layer replaced: the flattened layer could not hold both.
var ErrSquashLink = errors.New("layer: hard link to a file a later layer replaced")

// Squash flattens layers, oldest first, into one snapshot layer in format f
// with compression c (docs/snapshot-format.md, "Layered snapshots"), by a
// streaming k-way merge: each layer is read once, in step with the others;
// for each path the newest layer's entry wins, and whiteouts, non-directories
// and opaque directories of a layer hide what older layers have beneath
// them. A directory is opaque in the result when a layer that counts made
// it so, or when it replaced a non-directory or a whiteout. Memory grows
// with the depth of the tree and with the number of replaced entries, not
// with the layers' sizes. Applying the result gives the tree applying the
// layers in order gives.
func Squash(ctx context.Context, w io.Writer, layers []io.Reader, f Format, c Compression) (Stats, error) {
	f, err := ParseFormat(string(f))
	if err != nil {
		return Stats{}, err
	}
	if c, err = ParseCompression(string(c)); err != nil {
		return Stats{}, err
	}
	curs := make([]*squashCursor, len(layers))
	for i, r := range layers {
		rd, err := NewReader(r)
		if err != nil {
			return Stats{}, fmt.Errorf("squash: layer %d: %w", i, err)
		}
		defer rd.Close()
		curs[i] = &squashCursor{i: i, rd: rd}
		if err := curs[i].advance(); err != nil {
			return Stats{}, err
		}
	}
	return encode(w, f, c, func(tw *Writer) error { return squashEntries(ctx, tw, curs) })
}

type squashCursor struct {
	i    int
	rd   *Reader
	cur  *Entry // nil at the end
	next *Entry // read ahead (after a directory)
	// hiders are the entries of this layer that hide older layers' entries
	// beneath them (whiteouts, non-directories, opaque directories), each
	// an ancestor of the one before.
	hiders []string
	// replaced are the paths whose entry of this layer did not make it
	// into the result, for the hard-link check.
	replaced map[string]bool
}

func (c *squashCursor) read() (*Entry, error) {
	if c.next != nil {
		e := c.next
		c.next = nil
		return e, nil
	}
	e, err := c.rd.Next()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("squash: layer %d: %w", c.i, err)
	}
	return e, nil
}

// advance moves to the next path, merging a directory with an opaque
// marker of the same path that follows it (the oci format's).
func (c *squashCursor) advance() error {
	prev := c.cur
	e, err := c.read()
	if err != nil || e == nil {
		c.cur = nil
		return err
	}
	if e.Header != nil && e.Header.Typeflag == tar.TypeDir || e.Header == nil {
		for {
			n, err := c.read()
			if err != nil {
				return err
			}
			if n == nil || n.Path != e.Path || n.Header != nil && e.Header != nil {
				c.next = n
				break
			}
			e.Opaque = e.Opaque || n.Opaque
			if e.Header == nil {
				e.Header = n.Header
			}
		}
	}
	if prev != nil && ComparePaths(prev.Path, e.Path) >= 0 {
		return fmt.Errorf("squash: layer %d: %q after %q: %w", c.i, "/"+e.Path, "/"+prev.Path, ErrSquashOrder)
	}
	c.cur = e
	return nil
}

func isAncestor(a, p string) bool {
	return a == "" && p != "" || strings.HasPrefix(p, a) && len(p) > len(a) && p[len(a)] == '/'
}

func isDirEntry(e *Entry) bool {
	return !e.Whiteout && (e.Header == nil || e.Header.Typeflag == tar.TypeDir)
}

func squashEntries(ctx context.Context, tw *Writer, curs []*squashCursor) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var p string
		found := false
		for _, c := range curs {
			if c.cur != nil && (!found || ComparePaths(c.cur.Path, p) < 0) {
				p, found = c.cur.Path, true
			}
		}
		if !found {
			return nil
		}
		// Layers below hide are hidden at p by an ancestor in layer hide.
		hide := -1
		for _, c := range curs {
			for n := len(c.hiders); n > 0 && !isAncestor(c.hiders[n-1], p); n-- {
				c.hiders = c.hiders[:n-1]
			}
			if len(c.hiders) > 0 {
				hide = c.i
			}
		}
		var cands []*squashCursor // newest first
		for j := len(curs) - 1; j >= 0; j-- {
			if c := curs[j]; c.cur != nil && c.cur.Path == p {
				cands = append(cands, c)
			}
		}
		var win *squashCursor
		if cands[0].i >= hide {
			win = cands[0]
		}
		if win != nil {
			e := *win.cur
			if isDirEntry(&e) {
				op := false
				for _, c := range cands {
					if c.i < hide {
						break
					}
					ce := c.cur
					if !isDirEntry(ce) {
						op = true
						break
					}
					if e.Header == nil && ce.Header != nil {
						e.Header = ce.Header
					}
					if ce.Opaque {
						op = true
						break
					}
				}
				e.Opaque = op
			}
			if h := e.Header; h != nil && h.Typeflag == tar.TypeLink && win.replaced[h.Linkname] {
				return fmt.Errorf("squash: layer %d: %q: %w %q", win.i, "/"+p, ErrSquashLink, "/"+h.Linkname)
			}
			var content io.Reader
			if !e.Whiteout && e.Header != nil && e.Header.Typeflag == tar.TypeReg && e.Header.Size > 0 {
				content = ctxReader{ctx: ctx, r: win.rd}
			}
			if err := tw.WriteEntry(&e, content); err != nil {
				return fmt.Errorf("squash: %w", err)
			}
		}
		for _, c := range cands {
			ce := c.cur
			if ce.Whiteout || !isDirEntry(ce) || ce.Opaque {
				c.hiders = append(c.hiders, p)
			}
			if c != win && ce.Header != nil && ce.Header.Typeflag == tar.TypeReg {
				if c.replaced == nil {
					c.replaced = make(map[string]bool)
				}
				c.replaced[p] = true
			}
			if err := c.advance(); err != nil {
				return err
			}
		}
	}
}
