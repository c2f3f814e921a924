package layer

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ocisnap/ocisnap/internal/tarheader"
)

// copyBufSize is the chunk in which file content is copied into the tar
// stream: large enough that a compressor or a file sees few, big writes.
const copyBufSize = 1 << 20

// epoch is the mtime of canonical whiteout and opaque marker entries.
var epoch = time.Unix(0, 0)

// Writer encodes Entries as a snapshot tar stream in one whiteout format.
//
// The encoding is canonical, so that equal entries give equal bytes and a
// layer converted from one format to the other and back is byte-identical:
// PAX format (mtimes keep nanoseconds); names rooted at "./" with a trailing
// "/" on directories; numeric uid/gid only (no user or group names, no
// atime/ctime); only SCHILY.xattr.* PAX records; whiteouts and OCI opaque
// markers with mode 0, uid/gid 0 and mtime 0.
//
// Writer writes entries in the order given; it does not sort. It holds the
// last directory header back until the next entry (overlay format), so that
// a marker-only opaque Entry (as read from an OCI layer's .wh..wh..opq) can
// be merged into it.
type Writer struct {
	tw     *tar.Writer
	out    io.Writer // tw's
	format Format
	buf    []byte
	err    error
	n      Stats // tar headers and content bytes written
	// maxBytes, when positive, bounds the content bytes written
	// (WithMaxExportBytes): a regular file that would pass it fails
	// before its header is written.
	maxBytes int64

	// Headers archive/tar would encode the same are written directly
	// (tarheader.Append); then so are their content and padding.
	hdrBuf      []byte
	direct      bool
	remain, pad int64

	// overlay format: the last directory header, not yet written.
	pending     *tar.Header
	pendingPath string
	// overlay format: directory headers written so far, by Path, so that an
	// opaque marker arriving after other entries can repeat its directory.
	dirs map[string]*tar.Header

	// oci format: Path of the opaque marker just written, so a marker-only
	// Entry following an Opaque directory Entry is not written twice.
	lastOpaque    string
	lastWasOpaque bool
}

// NewWriter returns a Writer writing a snapshot in format f to w. Close
// writes the end-of-archive marker; w itself is never closed.
func NewWriter(w io.Writer, f Format) *Writer {
	if f == "" {
		f = FormatOverlay
	}
	wr := &Writer{tw: tar.NewWriter(w), out: w, format: f}
	if f == FormatOverlay {
		wr.dirs = make(map[string]*tar.Header)
	}
	if f != FormatOverlay && f != FormatOCI {
		wr.err = fmt.Errorf("%w: %q", ErrUnknownFormat, f)
	}
	return wr
}

// WriteEntry writes one entry. For a regular file with a non-zero size,
// content must yield Header.Size bytes; it is copied in large chunks and
// never held in memory. Whiteout entries are written in the canonical form
// of the Writer's format, ignoring their Header's metadata.
//
// After an error the archive is broken: every later call returns the error.
func (w *Writer) WriteEntry(e *Entry, content io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if err := w.writeEntry(e, content); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Close flushes a held-back directory and writes the end-of-archive marker.
// It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.flushPending(); err != nil {
		w.err = err
		return err
	}
	if err := w.endEntry(); err != nil {
		w.err = fmt.Errorf("write end of archive: %w", err)
		return w.err
	}
	if err := w.tw.Close(); err != nil {
		w.err = fmt.Errorf("write end of archive: %w", err)
		return w.err
	}
	w.err = fmt.Errorf("layer: write to closed Writer")
	return nil
}

func (w *Writer) writeEntry(e *Entry, content io.Reader) error {
	if e == nil {
		return fmt.Errorf("write entry: nil Entry")
	}
	if err := checkEntryPath(e.Path); err != nil {
		return err
	}
	if w.format == FormatOCI && (e.Whiteout || e.Header != nil) && strings.HasPrefix(path.Base(e.Path), WhiteoutPrefix) {
		return fmt.Errorf("write entry %q: name is reserved for whiteouts in the oci format: %w", e.Path, ErrUnsupportedEntry)
	}
	wasOpaque, lastOpaque := w.lastWasOpaque, w.lastOpaque
	w.lastWasOpaque = false
	switch {
	case e.Whiteout || isWhiteoutDevice(e.Header):
		// A char 0/0 device is a whiteout to overlayfs whatever the
		// Entry says; written as one in either format.
		return w.writeWhiteout(e.Path)
	case e.Header == nil:
		if !e.Opaque {
			return fmt.Errorf("write entry %q: no header: %w", e.Path, ErrUnsupportedEntry)
		}
		if w.format == FormatOCI && wasOpaque && lastOpaque == e.Path {
			w.lastWasOpaque = true
			return nil // already written after its directory
		}
		return w.writeOpaqueMarker(e.Path)
	}
	hdr, err := canonicalHeader(e)
	if err != nil {
		return err
	}
	if err := w.flushPending(); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		if w.format == FormatOverlay {
			if e.Opaque {
				setOpaque(hdr)
			}
			w.pending, w.pendingPath = hdr, e.Path
			w.dirs[e.Path] = hdr
			return nil
		}
		if err := w.writeHeader(hdr); err != nil {
			return err
		}
		if e.Opaque {
			return w.writeOpaqueMarker(e.Path)
		}
		return nil
	}
	if w.maxBytes > 0 && hdr.Typeflag == tar.TypeReg && hdr.Size > w.maxBytes-w.n.Bytes {
		return fmt.Errorf("write entry %q: %w: more than %d bytes of content (max export bytes)", e.Path, ErrLimitExceeded, w.maxBytes)
	}
	if err := w.writeHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	if content == nil {
		return fmt.Errorf("write entry %q: no content for %d bytes", e.Path, hdr.Size)
	}
	if _, err := w.copyContent(content, hdr.Size); err != nil {
		return fmt.Errorf("write entry %q: %w", e.Path, err)
	}
	return nil
}

// copyContent copies exactly n bytes from r in copyBufSize chunks. It
// reads into its own buffer rather than let r (an *os.File) pick a small
// one through WriteTo.
func (w *Writer) copyContent(r io.Reader, n int64) (int64, error) {
	if dr, ok := r.(*dataReader); ok && int64(len(dr.data)) >= n {
		// Read into memory already (Write's walker): no second copy.
		if _, err := w.writeData(dr.data[:n]); err != nil {
			return 0, err
		}
		w.n.Bytes += n
		return n, nil
	}
	if n > fileCopyMin && w.direct {
		if bw, ok := w.out.(*bufio.Writer); ok {
			if f, ctx, ok := contentFile(r); ok {
				defer f.Close()
				return w.copyFile(bw, f, ctx, n)
			}
		}
	}
	if w.buf == nil {
		w.buf = make([]byte, copyBufSize)
	}
	var done int64
	for done < n {
		chunk := w.buf
		if rem := n - done; rem < int64(len(chunk)) {
			chunk = chunk[:rem]
		}
		m, err := io.ReadFull(r, chunk)
		if m > 0 {
			if _, werr := w.writeData(chunk[:m]); werr != nil {
				return done, werr
			}
			done += int64(m)
			w.n.Bytes += int64(m)
		}
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return done, shortContent(done, n)
			}
			return done, err
		}
	}
	return done, nil
}

// Content of a regular file larger than fileCopyMin goes to the output's
// ReadFrom (bufio.Writer hands it to the sink's: a file sink copies with
// copy_file_range, file to file in the kernel, no copy through user
// memory), fileCopyChunk at a time so that a cancelled ctx stops it. It
// also keeps large content out of bufio.Writer's 1 MiB-aligned writes,
// which some kernels write to a file far more slowly than other writes
// (see tests/bench/notes.md, "Large export: a kernel pathology, avoided").
const (
	fileCopyMin   = 256 << 10
	fileCopyChunk = 64 << 20
)

// shortContent is the error of content that ended after done of its n bytes.
func shortContent(done, n int64) error {
	return fmt.Errorf("content ended after %d of %d bytes: %w", done, n, io.ErrUnexpectedEOF)
}

// copyFile copies exactly n bytes of f's content, from its offset.
func (w *Writer) copyFile(bw *bufio.Writer, f *os.File, ctx context.Context, n int64) (int64, error) {
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	var done int64
	for done < n {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		chunk := min(n-done, fileCopyChunk)
		m, err := bw.ReadFrom(io.LimitReader(f, chunk))
		done += m
		w.remain -= m
		w.n.Bytes += m
		if err != nil {
			return done, err
		}
		if m < chunk {
			return done, shortContent(done, n)
		}
	}
	return done, nil
}

func (w *Writer) writeHeader(hdr *tar.Header) error {
	if err := w.endEntry(); err != nil {
		return fmt.Errorf("write entry %q: %w", hdr.Name, err)
	}
	if b, ok := tarheader.Append(w.hdrBuf[:0], hdr); ok {
		w.hdrBuf = b
		if _, err := w.out.Write(b); err != nil {
			return fmt.Errorf("write entry %q: %w", hdr.Name, err)
		}
		w.direct, w.remain, w.pad = true, 0, 0
		if hdr.Typeflag == tar.TypeReg {
			w.remain, w.pad = hdr.Size, tarheader.Padding(hdr.Size)
		}
	} else if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write entry %q: %w", hdr.Name, err)
	}
	w.n.Entries++
	return nil
}

// endEntry pads the entry written last, as archive/tar's Flush.
func (w *Writer) endEntry() error {
	if !w.direct {
		return w.tw.Flush()
	}
	if w.remain > 0 {
		return fmt.Errorf("archive/tar: missed writing %d bytes", w.remain)
	}
	w.direct = false
	if w.pad > 0 {
		var zero [tarheader.BlockSize]byte
		if _, err := w.out.Write(zero[:w.pad]); err != nil {
			return err
		}
	}
	return nil
}

// writeData writes content of the current entry.
func (w *Writer) writeData(p []byte) (int, error) {
	if !w.direct {
		return w.tw.Write(p)
	}
	if int64(len(p)) > w.remain {
		return 0, tar.ErrWriteTooLong
	}
	n, err := w.out.Write(p)
	w.remain -= int64(n)
	return n, err
}

// stats returns the tar headers and content bytes written so far.
func (w *Writer) stats() Stats { return w.n }

func (w *Writer) flushPending() error {
	if w.pending == nil {
		return nil
	}
	hdr := w.pending
	w.pending, w.pendingPath = nil, ""
	return w.writeHeader(hdr)
}

func (w *Writer) writeWhiteout(p string) error {
	if p == "" {
		return fmt.Errorf("write entry \"./\": whiteout of the root: %w", ErrUnsupportedEntry)
	}
	if err := w.flushPending(); err != nil {
		return err
	}
	if w.format == FormatOCI {
		dir, base := path.Split(p)
		return w.writeHeader(canonicalMarker(tar.TypeReg, "./"+dir+WhiteoutPrefix+base))
	}
	return w.writeHeader(canonicalMarker(tar.TypeChar, "./"+p))
}

// writeOpaqueMarker marks the directory at p opaque. OCI: a .wh..wh..opq
// entry inside it. Overlay: the opaque xattr on the directory's header,
// merged into the held-back header if it is p's, else repeating p's header
// written earlier, else on a synthesized 0755 directory.
func (w *Writer) writeOpaqueMarker(p string) error {
	if w.format == FormatOCI {
		name := "./" + WhiteoutOpaque
		if p != "" {
			name = "./" + p + "/" + WhiteoutOpaque
		}
		if err := w.writeHeader(canonicalMarker(tar.TypeReg, name)); err != nil {
			return err
		}
		w.lastOpaque, w.lastWasOpaque = p, true
		return nil
	}
	if w.pending != nil && w.pendingPath == p {
		setOpaque(w.pending)
		return nil
	}
	if err := w.flushPending(); err != nil {
		return err
	}
	var hdr *tar.Header
	if prev, ok := w.dirs[p]; ok {
		hdr = cloneHeader(prev)
	} else {
		hdr = canonicalMarker(tar.TypeDir, dirName(p))
		hdr.Mode = 0o755
	}
	setOpaque(hdr)
	w.pending, w.pendingPath = hdr, p
	w.dirs[p] = hdr
	return nil
}

func isWhiteoutDevice(h *tar.Header) bool {
	return h != nil && h.Typeflag == tar.TypeChar && h.Devmajor == 0 && h.Devminor == 0
}

func setOpaque(hdr *tar.Header) {
	if hdr.PAXRecords == nil {
		hdr.PAXRecords = make(map[string]string, 1)
	}
	hdr.PAXRecords[paxSchilyXattr+XattrOpaque] = "y"
}

func cloneHeader(h *tar.Header) *tar.Header {
	c := *h
	if h.PAXRecords != nil {
		c.PAXRecords = make(map[string]string, len(h.PAXRecords))
		for k, v := range h.PAXRecords {
			c.PAXRecords[k] = v
		}
	}
	return &c
}

// canonicalMarker is a header with canonical metadata: mode 0, uid/gid 0,
// mtime 0.
func canonicalMarker(typ byte, name string) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, ModTime: epoch, Format: tar.FormatPAX}
}

func dirName(p string) string {
	if p == "" {
		return "./"
	}
	return "./" + p + "/"
}

// checkEntryPath refuses a Path that is not clean and relative.
func checkEntryPath(p string) error {
	if p == "" {
		return nil
	}
	if path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("write entry %q: %w", p, ErrInsecurePath)
	}
	return nil
}

// canonicalHeader builds the header written for a non-whiteout entry.
func canonicalHeader(e *Entry) (*tar.Header, error) {
	h := e.Header
	out := &tar.Header{
		Typeflag: h.Typeflag,
		Mode:     h.Mode & 0o7777,
		Uid:      h.Uid,
		Gid:      h.Gid,
		ModTime:  h.ModTime,
		Format:   tar.FormatPAX,
	}
	if out.ModTime.IsZero() {
		out.ModTime = epoch
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeCont: //nolint:staticcheck // TypeRegA is how old tars spell TypeReg.
		// Sparse and contiguous files are written as plain files with
		// their full content (as archive/tar reads them).
		out.Typeflag = tar.TypeReg
		out.Size = h.Size
		if out.Size < 0 {
			return nil, fmt.Errorf("write entry %q: negative size", e.Path)
		}
	case tar.TypeDir:
	case tar.TypeSymlink:
		out.Linkname = h.Linkname
	case tar.TypeLink:
		target := strings.TrimPrefix(h.Linkname, "./")
		if target == "" || checkEntryPath(target) != nil {
			return nil, fmt.Errorf("write entry %q: hard link to %q: %w", e.Path, h.Linkname, ErrInsecurePath)
		}
		out.Linkname = "./" + target
	case tar.TypeChar, tar.TypeBlock:
		out.Devmajor, out.Devminor = h.Devmajor, h.Devminor
	case tar.TypeFifo:
	default:
		return nil, fmt.Errorf("write entry %q: type %q: %w", e.Path, h.Typeflag, ErrUnsupportedEntry)
	}
	if out.Typeflag == tar.TypeDir {
		out.Name = dirName(e.Path)
	} else if e.Path == "" {
		return nil, fmt.Errorf("write entry \"./\": the root is not a directory: %w", ErrUnsupportedEntry)
	} else {
		out.Name = "./" + e.Path
	}
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, paxSchilyXattr)
		if !ok || strings.HasPrefix(name, overlayXattrPrefix) {
			continue
		}
		if out.PAXRecords == nil {
			out.PAXRecords = make(map[string]string)
		}
		out.PAXRecords[k] = v
	}
	return out, nil
}

// encode writes a snapshot in format f with compression c to w: body writes
// the entries, then encode ends the archive, flushes and closes the
// compressor (never w). Write and Convert share it.
func encode(w io.Writer, f Format, c Compression, body func(*Writer) error) (Stats, error) {
	out := w
	var cw io.WriteCloser
	if c != CompressionNone {
		var err error
		if cw, err = Compress(w, c); err != nil {
			return Stats{}, err
		}
		out = cw
	}
	bw := bufio.NewWriterSize(out, copyBufSize)
	tw := NewWriter(bw, f)
	err := body(tw)
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cw != nil {
		if cerr := cw.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s compressor: %w", c, cerr)
		}
	}
	return tw.stats(), err
}
