package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ocisnap/ocisnap/internal/tarheader"
)

// maxTrailingZeroBytes bounds the zero padding accepted after the end-of-archive
// blocks. GNU tar pads to its record size (10 KiB by default, 1 MiB with
// -b 2048); anything much larger is a decompression bomb, not padding.
const maxTrailingZeroBytes = 16 << 20

// Reader reads a snapshot and yields its changes as Entries, whatever the
// whiteout format (overlay, OCI, or both mixed) and the compression.
//
// Every name and hard link target is checked: absolute names, ".."
// elements and NUL bytes fail with ErrInsecurePath. Reader checks the
// stream's integrity too: a stream cut at an entry boundary or inside an
// entry fails with ErrTruncated, data after the end of the archive with
// ErrTrailingData, and a compressed stream's checksum is verified at the
// end. So the io.EOF from Next means the whole snapshot was read.
//
// Reader streams: it never holds an entry's content or the archive in
// memory. Only the set of whiteout names (for gVisor's hard-linked
// whiteouts) grows with the stream.
type Reader struct {
	dec  io.ReadCloser
	comp Compression
	cr   *readCounter
	tr   *tarheader.Reader

	// whiteouts holds the cleaned tar names of whiteout entries: gVisor
	// writes the second and later whiteouts as hard links to the first.
	whiteouts map[string]struct{}
	// content is true while the current entry's data is readable through
	// Read (regular files; not whiteouts or opaque markers).
	content bool
	entries int64  // tar headers read
	last    string // name of the last header read, as written, for errors
	err     error  // sticky
}

// NewReader returns a Reader of the snapshot r, plain or compressed (gzip or
// zstd, detected from the magic bytes). r is hostile.
func NewReader(r io.Reader) (*Reader, error) {
	dec, comp, err := Decompress(r)
	if err != nil {
		return nil, err
	}
	cr := &readCounter{r: dec}
	return &Reader{
		dec:       dec,
		comp:      comp,
		cr:        cr,
		tr:        tarheader.NewReader(cr),
		whiteouts: make(map[string]struct{}),
	}, nil
}

// Compression reports the compression detected by NewReader.
func (r *Reader) Compression() Compression { return r.comp }

// Close releases the decompressor. It does not close the underlying reader.
func (r *Reader) Close() error { return r.dec.Close() }

// Read reads the current entry's content. It returns io.EOF at the end of
// the content, and at once for entries without content (whiteouts, opaque
// markers, directories, links).
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.content {
		return 0, io.EOF
	}
	n, err := r.tr.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = r.dataError(err)
		r.err = err
	}
	return n, err
}

func (r *Reader) dataError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("entry %q: content%s: %w", r.last, r.inStream(), ErrTruncated)
	}
	return fmt.Errorf("entry %q: content%s: %w", r.last, r.inStream(), err)
}

// Next advances to the next change. It returns io.EOF after the last one,
// once the end-of-archive and the end of the stream have been verified.
// Any unread content of the current entry is skipped.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
		r.content = false
	}
	return e, err
}

func (r *Reader) next() (*Entry, error) {
	for {
		hdr, err := r.nextHeader()
		if err != nil {
			return nil, err
		}
		r.entries++
		r.last = hdr.Name
		e, err := r.convert(hdr)
		if err != nil {
			return nil, err
		}
		if e != nil {
			return e, nil
		}
	}
}

// nextHeader returns the next tar header, telling a proper end of archive
// from a truncated stream.
func (r *Reader) nextHeader() (*tar.Header, error) {
	// archive/tar skips unread content itself, but the count below needs
	// this entry's data consumed first.
	if _, err := io.Copy(io.Discard, r.tr); err != nil {
		return nil, r.dataError(err)
	}
	r.content = false
	start := r.cr.n
	r.cr.zeroRun, r.cr.track = 0, true
	hdr, err := r.tr.Next()
	r.cr.track = false
	if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
		err = nil // GODEBUG=tarinsecurepath=0; convert checks names itself
	}
	switch {
	case err == nil:
		return hdr, nil
	case errors.Is(err, io.EOF):
		// archive/tar returns io.EOF after two zero blocks, but also for a
		// stream that simply stops at a block boundary (or after a single
		// zero block). Only the first is the end of the archive: the
		// header read must have consumed at least the two blocks (plus
		// the previous entry's padding, under 512 bytes) and ended in them.
		consumed := r.cr.n - start
		if consumed < 2*tarheader.BlockSize || r.cr.zeroRun < 2*tarheader.BlockSize {
			if r.cr.n == 0 {
				return nil, fmt.Errorf("not a tar archive%s: empty stream: %w", r.inStream(), ErrTruncated)
			}
			return nil, fmt.Errorf("%s: no end-of-archive blocks: %w", r.where(), ErrTruncated)
		}
		if err := r.drain(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		if r.entries == 0 && r.cr.n < tarheader.BlockSize {
			return nil, fmt.Errorf("not a tar archive%s: %d bytes: %w", r.inStream(), r.cr.n, ErrTruncated)
		}
		return nil, fmt.Errorf("%s: header%s: %w", r.where(), r.inStream(), ErrTruncated)
	case r.entries == 0 && errors.Is(err, tar.ErrHeader):
		return nil, fmt.Errorf("not a tar archive%s: %w", r.inStream(), err)
	}
	return nil, fmt.Errorf("%s%s: %w", r.where(), r.inStream(), err)
}

// inStream names the compressed stream, if any, for errors.
func (r *Reader) inStream() string {
	if r.comp == CompressionNone {
		return ""
	}
	return fmt.Sprintf(" (%s stream)", r.comp)
}

// where names the position in the stream for an error between entries.
func (r *Reader) where() string {
	if r.entries == 0 {
		return "before the first entry"
	}
	return fmt.Sprintf("after entry %q (%d entries)", r.last, r.entries)
}

// drain reads the stream after the end-of-archive blocks: zeros (record
// padding) are fine, anything else is ErrTrailingData. Reading to the end
// also makes gzip and zstd verify their checksums.
func (r *Reader) drain() error {
	buf := make([]byte, 32<<10)
	var zeros int64
	for {
		n, err := r.cr.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return fmt.Errorf("%s: %w", r.where(), ErrTrailingData)
			}
		}
		zeros += int64(n)
		if zeros > maxTrailingZeroBytes {
			return fmt.Errorf("%s: more than %d zero bytes after the end of archive: %w",
				r.where(), maxTrailingZeroBytes, ErrTrailingData)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = ErrTruncated
			}
			return fmt.Errorf("after end of archive%s: %w", r.inStream(), err)
		}
	}
}

// convert turns a tar header into an Entry, or nil for headers that carry
// no change (PAX global headers, AUFS metadata).
func (r *Reader) convert(hdr *tar.Header) (*Entry, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil, nil
	}
	p, err := cleanEntryName(hdr.Name)
	if err != nil {
		return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	opaque := stripOverlayXattrs(hdr)
	if hdr.Typeflag == tar.TypeLink {
		target, err := cleanEntryName(hdr.Linkname)
		if err == nil && target == "" {
			err = fmt.Errorf("%w: hard link to the root", ErrInsecurePath)
		}
		if err != nil {
			return nil, fmt.Errorf("entry %q: link target %q: %w", hdr.Name, hdr.Linkname, err)
		}
		hdr.Linkname = target
	}

	// OCI format: .wh.<name> and .wh..wh..opq (image-spec layer.md
	// "Whiteouts").
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if isSparse(hdr) && (strings.HasPrefix(base, WhiteoutPrefix) || strings.HasPrefix(p, WhiteoutPrefix+WhiteoutPrefix)) {
		// The content of whiteouts, opaque markers and AUFS metadata is
		// never handed out: Next discards it through the tar reader,
		// which expands a sparse file's holes. One claiming an exabyte of
		// holes would keep Next busy forever, beyond any limit of the
		// caller's (AUFS metadata never even reaches it). No tool writes
		// such entries.
		return nil, fmt.Errorf("entry %q: %w: sparse whiteout or AUFS metadata", hdr.Name, ErrUnsupportedEntry)
	}
	if base != WhiteoutOpaque && (strings.HasPrefix(base, WhiteoutPrefix+WhiteoutPrefix) ||
		strings.HasPrefix(p, WhiteoutPrefix+WhiteoutPrefix)) {
		// Other AUFS metadata (.wh..wh.plnk/ and friends), which
		// "should not go into exported archives": skipped, as containerd
		// and moby do.
		return nil, nil
	}
	if strings.HasPrefix(base, WhiteoutPrefix) {
		if base == WhiteoutOpaque {
			return &Entry{Path: dir, Opaque: true}, nil
		}
		name := base[len(WhiteoutPrefix):]
		if name == "" || name == "." || name == ".." {
			return nil, fmt.Errorf("entry %q: %w: whiteout of %q", hdr.Name, ErrInsecurePath, name)
		}
		target := path.Join(dir, name)
		r.whiteouts[p] = struct{}{}
		setName(hdr, target)
		return &Entry{Path: target, Header: hdr, Whiteout: true}, nil
	}

	// Overlay format: char 0/0, and gVisor's hard links to an earlier one.
	whiteout := hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0
	if hdr.Typeflag == tar.TypeLink {
		_, whiteout = r.whiteouts[hdr.Linkname]
	}
	if whiteout {
		r.whiteouts[p] = struct{}{}
		setName(hdr, p)
		return &Entry{Path: p, Header: hdr, Whiteout: true}, nil
	}
	if len(r.whiteouts) > 0 {
		delete(r.whiteouts, p) // the name now holds something else
	}

	e := &Entry{Path: p, Header: hdr}
	if hdr.Typeflag == tar.TypeDir {
		e.Opaque = opaque
	}
	setName(hdr, p)
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		r.content = true
	}
	return e, nil
}

// stripOverlayXattrs removes every trusted.overlay.* and user.overlay.*
// xattr from hdr: they are the upper layer's bookkeeping, never the file's,
// and are never applied. It reports whether they marked the entry opaque
// (trusted.overlay.opaque=y, or gVisor's user.overlay.opaque=y).
func stripOverlayXattrs(hdr *tar.Header) (opaque bool) {
	for k, v := range hdr.PAXRecords {
		x, ok := strings.CutPrefix(k, paxSchilyXattr)
		if !ok || !isOverlayXattr(x) {
			continue
		}
		if (x == XattrOpaque || x == XattrOpaqueUser) && v == "y" {
			opaque = true
		}
		delete(hdr.PAXRecords, k)
	}
	// archive/tar still fills the deprecated Xattrs field from the same
	// records.
	for k, v := range hdr.Xattrs {
		if isOverlayXattr(k) {
			if (k == XattrOpaque || k == XattrOpaqueUser) && v == "y" {
				opaque = true
			}
			delete(hdr.Xattrs, k)
		}
	}
	return opaque
}

func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, overlayXattrPrefix) || strings.HasPrefix(name, overlayUserXattrPfx)
}

// setName normalizes hdr.Name to p: "./" prefix, "/" suffix on directories.
func setName(hdr *tar.Header, p string) {
	switch {
	case p == "":
		hdr.Name = "./"
	case hdr.Typeflag == tar.TypeDir:
		hdr.Name = "./" + p + "/"
	default:
		hdr.Name = "./" + p
	}
}

// cleanEntryName checks and cleans a name from the tar stream (an entry
// name or a hard link target): relative, no ".." element anywhere (not even
// "a/../b"), no NUL byte. It returns the path without "./" prefix or "/"
// suffix; "" is the root, written "./" or ".".
func cleanEntryName(unsafePath string) (string, error) {
	switch {
	case unsafePath == "":
		return "", fmt.Errorf("%w: empty name", ErrInsecurePath)
	case strings.IndexByte(unsafePath, 0) >= 0:
		return "", fmt.Errorf("%w: NUL byte in name", ErrInsecurePath)
	case strings.HasPrefix(unsafePath, "/"):
		return "", fmt.Errorf("%w: absolute path", ErrInsecurePath)
	}
	for _, elem := range strings.Split(unsafePath, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%w: path contains \"..\"", ErrInsecurePath)
		}
	}
	p := path.Clean(unsafePath)
	if p == "." {
		return "", nil
	}
	return p, nil
}

// readCounter counts the bytes archive/tar consumes and, while track is
// set (inside tar.Reader.Next), the length of the run of zero bytes that
// ends what was consumed.
type readCounter struct {
	r       io.Reader
	n       int64
	track   bool
	zeroRun int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.track && n > 0 {
		i := n - 1
		for i >= 0 && p[i] == 0 {
			i--
		}
		if i < 0 {
			c.zeroRun += int64(n)
		} else {
			c.zeroRun = int64(n - 1 - i)
		}
	}
	return n, err
}

// isSparse reports whether hdr is a GNU sparse file, old style (type 'S')
// or in PAX records (GNU.sparse.*), whose holes the tar reader expands.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
