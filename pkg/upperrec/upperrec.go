// Package upperrec records what an overlay upper directory holds when a
// container is created, after its restore (docs/snapshot-format.md,
// "Layered snapshots"): per entry, in the export's walk order
// (layer.ComparePaths), its path, a tag saying who put it there, and an
// identity (layer.FileID) that changes whenever the entry does. The record
// is a file streamed to and from disk, never held in memory whole.
//
// At export it tells layer.Write (as a layer.Delta) what to leave out:
// the runtime's stubs while unchanged (every export), and, for a layered
// snapshot, everything unchanged since the restore, with whiteouts for
// restored entries that are gone.
package upperrec

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/layer"
)

// Tags: who put an entry into the upper.
const (
	// TagEngine: there before the restore and not changed by it (the
	// runtime's stubs: /etc/mtab, parents of mountpoints).
	TagEngine = 'E'
	// TagRestored: put there (or changed) by the restore.
	TagRestored = 'R'
)

// Version is the record format's version.
const Version = 1

// Header is the record's first line.
type Header struct {
	Version int `json:"version"`
	// UpperIno and UpperDev identify the upper directory the record is of:
	// a record of another upper is not used.
	UpperIno uint64 `json:"upperIno"`
	UpperDev uint64 `json:"upperDev"`
	// Base is the digest of the snapshot manifest restored ("" when none
	// was, or a plain file), Layers its layer count and Format its format:
	// a layer is added to that manifest only while the location still
	// holds it.
	Base   string `json:"base,omitempty"`
	Layers int    `json:"layers,omitempty"`
	Format string `json:"format,omitempty"`
}

// Entry is one recorded entry.
type Entry struct {
	Tag  byte
	Path string
	ID   layer.FileID
	// Opaque: a directory with the overlay's opaque xattr.
	Opaque bool
}

// ErrCorrupt is wrapped by the error for a record that cannot be read.
var ErrCorrupt = errors.New("upperrec: corrupt record")

// Take records the upper directory into the file dst (replaced
// atomically), with hdr's fields other than the upper's identity, which
// Take fills in. An entry is tagged TagEngine when pre (a record taken
// before the restore, "" for none) holds it with the same identity, or
// when there is no pre and allEngine is set; TagRestored otherwise.
func Take(dst, upper string, hdr Header, pre string, allEngine bool) (err error) {
	ino, dev, err := dirID(upper)
	if err != nil {
		return fmt.Errorf("upper record of %q: %w", upper, err)
	}
	hdr.Version, hdr.UpperIno, hdr.UpperDev = Version, ino, dev
	var prev *Reader
	if pre != "" {
		if prev, _, err = Open(pre); err != nil {
			return err
		}
		defer prev.Close()
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("upper record %q: %w", dst, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	hj, _ := json.Marshal(hdr)
	w.Write(hj)
	w.WriteByte('\n')
	var cur Entry // the next entry of prev, if have
	have := false
	advance := func() (err error) {
		have = false
		if prev == nil {
			return nil
		}
		cur, have, err = prev.Next()
		return err
	}
	if err := advance(); err != nil {
		return err
	}
	var line []byte
	err = walk(upper, func(rel string, id layer.FileID, opaque bool) error {
		tag := byte(TagRestored)
		if allEngine && prev == nil {
			tag = TagEngine
		}
		for have && layer.ComparePaths(cur.Path, rel) < 0 {
			if err := advance(); err != nil {
				return err
			}
		}
		if have && cur.Path == rel {
			if cur.ID == id {
				tag = TagEngine
			}
			if err := advance(); err != nil {
				return err
			}
		}
		line = appendEntry(line[:0], tag, rel, id, opaque)
		_, err := w.Write(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("upper record of %q: %w", upper, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("upper record %q: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("upper record %q: %w", dst, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("upper record %q: %w", dst, err)
	}
	return nil
}

// Reader reads a record, entry by entry.
type Reader struct {
	f    *os.File
	r    *bufio.Reader
	path string
	line int
}

// Open opens the record file path and reads its header. A missing file is
// an error wrapping fs.ErrNotExist.
func Open(path string) (*Reader, Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Header{}, fmt.Errorf("upper record: %w", err)
	}
	r := &Reader{f: f, r: bufio.NewReaderSize(f, 64<<10), path: path}
	line, err := r.r.ReadString('\n')
	var hdr Header
	if err == nil {
		err = json.Unmarshal([]byte(line), &hdr)
	}
	if err == nil && hdr.Version != Version {
		err = fmt.Errorf("version %d, want %d", hdr.Version, Version)
	}
	if err != nil {
		f.Close()
		return nil, Header{}, fmt.Errorf("upper record %s: header: %w: %v", path, ErrCorrupt, err)
	}
	r.line = 1
	return r, hdr, nil
}

// Next returns the next entry; ok is false at the end.
func (r *Reader) Next() (e Entry, ok bool, err error) {
	line, err := r.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// Longer than the buffer (a path of many escaped bytes).
		long := append([]byte(nil), line...)
		var rest string
		rest, err = r.r.ReadString('\n')
		line = append(long, rest...)
	}
	if err == io.EOF && len(line) == 0 {
		return Entry{}, false, nil
	}
	r.line++
	if err != nil {
		return Entry{}, false, fmt.Errorf("upper record %s: line %d: %s: %w", r.path, r.line, err, ErrCorrupt)
	}
	if why := parseEntry(line[:len(line)-1], &e); why != "" {
		return Entry{}, false, fmt.Errorf("upper record %s: line %d: %s: %w", r.path, r.line, why, ErrCorrupt)
	}
	return e, true, nil
}

// appendEntry appends the record line of one entry: its tag, identity,
// flags and quoted path, space separated.
func appendEntry(b []byte, tag byte, rel string, id layer.FileID, opaque bool) []byte {
	b = append(b, tag, ' ')
	b = strconv.AppendUint(b, id.Ino, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, id.CtimeNs, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, id.Size, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(id.Mode), 10)
	flags := byte('0')
	if opaque {
		flags = '1'
	}
	b = append(b, ' ', flags, ' ')
	b = strconv.AppendQuote(b, rel)
	return append(b, '\n')
}

// parseEntry parses a record line (without its newline) into e, allocating
// only the path; it returns why the line is bad, "" if it is not.
func parseEntry(line []byte, e *Entry) string {
	if len(line) < 2 || line[1] != ' ' {
		return "want 7 fields"
	}
	e.Tag = line[0]
	if e.Tag != TagEngine && e.Tag != TagRestored {
		return "unknown tag"
	}
	line = line[2:]
	var nums [5]uint64
	for i := range nums {
		neg := i == 1 || i == 2 // ctime and size are signed
		v, rest, why := parseNum(line, neg)
		if why != "" {
			return why
		}
		nums[i], line = v, rest
	}
	e.ID = layer.FileID{Ino: nums[0], CtimeNs: int64(nums[1]), Size: int64(nums[2])}
	if nums[3] > 0xffffffff {
		return "bad mode"
	}
	e.ID.Mode = uint32(nums[3])
	e.Opaque = nums[4]&1 != 0
	// The path, quoted: without escapes (the common case) Unquote returns
	// part of its argument, so the path costs one allocation.
	p, err := strconv.Unquote(string(line))
	if err != nil || p == "" {
		return "bad path"
	}
	e.Path = p
	return ""
}

// parseNum parses a decimal number (negative if signed allows) ended by a
// space, returning it (two's complement if negative) and what follows the
// space.
func parseNum(b []byte, signed bool) (uint64, []byte, string) {
	neg := false
	if signed && len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	var v uint64
	i := 0
	for ; i < len(b) && b[i] != ' '; i++ {
		c := b[i]
		if c < '0' || c > '9' || v > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, nil, "bad number"
		}
		v = v*10 + uint64(c-'0')
	}
	if i == 0 || i == len(b) {
		return 0, nil, "want 7 fields"
	}
	if signed {
		if neg && v > 1<<63 || !neg && v > math.MaxInt64 {
			return 0, nil, "bad number"
		}
		if neg {
			v = -v
		}
	}
	return v, b[i+1:], ""
}

// Close closes the record.
func (r *Reader) Close() error { return r.f.Close() }

// Matches reports whether the record is of the upper directory upper.
func (h Header) Matches(upper string) bool {
	ino, dev, err := dirID(upper)
	return err == nil && ino == h.UpperIno && dev == h.UpperDev
}

// Delta is the layer.Delta of a record. Incremental leaves out every
// unchanged entry and whites out restored entries that are gone (a layer
// on top of the restored chain); otherwise only unchanged TagEngine
// entries are left out (a whole snapshot, without the runtime's stubs).
type Delta struct {
	r           *Reader
	incremental bool
	cur         Entry // the next recorded entry, if have
	have        bool
	err         error
	lastGone    string // the last path reported gone: nothing under it is reported
	nonDir      string // the last present non-directory that was recorded: its old children go with it
	// Left counts the entries left out, Gone the whiteouts reported.
	Left, Gone int64
}

// NewDelta makes the layer.Delta of the record r (which it reads on).
func NewDelta(r *Reader, incremental bool) *Delta {
	d := &Delta{r: r, incremental: incremental}
	d.next()
	return d
}

func (d *Delta) next() {
	d.have = false
	if d.err != nil {
		return
	}
	d.cur, d.have, d.err = d.r.Next()
}

func under(p, dir string) bool {
	return dir != "" && strings.HasPrefix(p, dir) && len(p) > len(dir) && p[len(dir)] == '/'
}

// skip passes the recorded entries before rel (or all, for rel ""),
// collecting the gone ones.
func (d *Delta) skip(rel string) []string {
	var gone []string
	for d.have && (rel == "" || layer.ComparePaths(d.cur.Path, rel) < 0) {
		p := d.cur.Path
		if d.incremental && d.cur.Tag == TagRestored && !under(p, d.lastGone) && !under(p, d.nonDir) {
			gone = append(gone, p)
			d.lastGone = p
			d.Gone++
		}
		d.next()
	}
	return gone
}

// Full makes d leave out only the runtime's unchanged stubs, as for a
// whole snapshot (before Write starts).
func (d *Delta) Full() { d.incremental = false }

// Entry implements layer.Delta.
func (d *Delta) Entry(rel string, id layer.FileID) (layer.Change, []string, error) {
	gone := d.skip(rel)
	c := layer.New
	if d.have && d.cur.Path == rel {
		switch {
		case d.cur.ID == id && (d.incremental || d.cur.Tag == TagEngine):
			c = layer.Unchanged
			d.Left++
		case d.incremental && d.cur.Opaque && id.Mode&0o170000 == 0o040000:
			c = layer.ChangedOpaque
		}
		if id.Mode&0o170000 != 0o040000 {
			d.nonDir = rel
		}
		d.next()
	}
	return c, gone, d.err
}

// Finish implements layer.Delta.
func (d *Delta) Finish() ([]string, error) {
	gone := d.skip("")
	return gone, d.err
}
