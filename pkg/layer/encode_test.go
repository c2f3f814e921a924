package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var wtUpdateGolden = flag.Bool("update-writer", false, "rewrite golden files in testdata/")

// wtEntry is an Entry with its content, for table tests.
type wtEntry struct {
	e       Entry
	content string
}

var wtTime = time.Unix(1700000000, 123456789)

func wtGoldenEntries() []wtEntry {
	hdr := func(typ byte, mode int64, mods ...func(*tar.Header)) *tar.Header {
		h := &tar.Header{Typeflag: typ, Mode: mode, Uid: 1000, Gid: 1000, ModTime: wtTime,
			Uname: "someone", Gname: "somegroup", AccessTime: wtTime, ChangeTime: wtTime}
		for _, m := range mods {
			m(h)
		}
		return h
	}
	return []wtEntry{
		{e: Entry{Path: "", Header: hdr(tar.TypeDir, 0o755)}},
		{e: Entry{Path: "etc", Header: hdr(tar.TypeDir, 0o755), Opaque: true}},
		{e: Entry{Path: "etc/app.conf", Header: hdr(tar.TypeReg, 0o4644, func(h *tar.Header) {
			h.Size = 6
			h.PAXRecords = map[string]string{
				"SCHILY.xattr.user.comment":        "hi",
				"SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
				"SCHILY.xattr.trusted.overlay.foo": "leak", // never written
				"LIBARCHIVE.creationtime":          "1",    // never written
				"mtime":                            "1.5",  // regenerated from ModTime
			}
		})}, content: "hello\n"},
		{e: Entry{Path: "etc/hard", Header: hdr(tar.TypeLink, 0o644, func(h *tar.Header) { h.Linkname = "etc/app.conf" })}},
		{e: Entry{Path: "etc/link", Header: hdr(tar.TypeSymlink, 0o777, func(h *tar.Header) { h.Linkname = "../usr/lib/x" })}},
		{e: Entry{Path: "etc/old", Whiteout: true, Header: hdr(tar.TypeChar, 0o600)}},
		{e: Entry{Path: "etc/zero", Header: hdr(tar.TypeChar, 0o644)}}, // a whiteout without the flag
		{e: Entry{Path: "fifo", Header: hdr(tar.TypeFifo, 0o640)}},
		{e: Entry{Path: "null", Header: hdr(tar.TypeChar, 0o666, func(h *tar.Header) { h.Devmajor, h.Devminor = 1, 3 })}},
	}
}

func wtWriteEntries(t testing.TB, f Format, entries []wtEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, f)
	for i := range entries {
		var r io.Reader
		if entries[i].content != "" {
			r = strings.NewReader(entries[i].content)
		}
		if err := w.WriteEntry(&entries[i].e, r); err != nil {
			t.Fatalf("WriteEntry(%q): %v", entries[i].e.Path, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// wtHeader is what a test compares of a header read back.
type wtHeader struct {
	Name     string
	Type     byte
	Mode     int64
	Uid, Gid int
	Mtime    time.Time
	Size     int64
	Link     string
	Major    int64
	Minor    int64
	Xattrs   map[string]string
	Content  string
}

func wtReadTar(t testing.TB, b []byte) []wtHeader {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []wtHeader
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: uname %q gname %q atime %v ctime %v, want none", h.Name, h.Uname, h.Gname, h.AccessTime, h.ChangeTime)
		}
		th := wtHeader{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid,
			Mtime: h.ModTime, Size: h.Size, Link: h.Linkname, Major: h.Devmajor, Minor: h.Devminor}
		for k, v := range h.PAXRecords {
			switch {
			case strings.HasPrefix(k, paxSchilyXattr):
				if th.Xattrs == nil {
					th.Xattrs = map[string]string{}
				}
				th.Xattrs[strings.TrimPrefix(k, paxSchilyXattr)] = v
			case k == "mtime" || k == "path" || k == "linkpath" || k == "size" || k == "uid" || k == "gid":
			default:
				t.Errorf("%s: unexpected PAX record %q=%q", h.Name, k, v)
			}
		}
		if h.Typeflag == tar.TypeReg {
			c, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read %s: %v", h.Name, err)
			}
			th.Content = string(c)
		}
		out = append(out, th)
	}
	return out
}

func TestWriterGolden(t *testing.T) {
	xa := map[string]string{"user.comment": "hi", "security.capability": "\x01\x00\x00\x02"}
	common := func(f Format) []wtHeader {
		root := wtHeader{Name: "./", Type: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1000, Mtime: wtTime}
		etc := wtHeader{Name: "./etc/", Type: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1000, Mtime: wtTime}
		out := []wtHeader{root, etc}
		if f == FormatOverlay {
			out[1].Xattrs = map[string]string{XattrOpaque: "y"}
		} else {
			out = append(out, wtHeader{Name: "./etc/.wh..wh..opq", Type: tar.TypeReg, Mtime: epoch})
		}
		out = append(out,
			wtHeader{Name: "./etc/app.conf", Type: tar.TypeReg, Mode: 0o4644, Uid: 1000, Gid: 1000, Mtime: wtTime, Size: 6, Xattrs: xa, Content: "hello\n"},
			wtHeader{Name: "./etc/hard", Type: tar.TypeLink, Mode: 0o644, Uid: 1000, Gid: 1000, Mtime: wtTime, Link: "./etc/app.conf"},
			wtHeader{Name: "./etc/link", Type: tar.TypeSymlink, Mode: 0o777, Uid: 1000, Gid: 1000, Mtime: wtTime, Link: "../usr/lib/x"},
		)
		if f == FormatOverlay {
			out = append(out, wtHeader{Name: "./etc/old", Type: tar.TypeChar, Mtime: epoch},
				wtHeader{Name: "./etc/zero", Type: tar.TypeChar, Mtime: epoch})
		} else {
			out = append(out, wtHeader{Name: "./etc/.wh.old", Type: tar.TypeReg, Mtime: epoch},
				wtHeader{Name: "./etc/.wh.zero", Type: tar.TypeReg, Mtime: epoch})
		}
		return append(out,
			wtHeader{Name: "./fifo", Type: tar.TypeFifo, Mode: 0o640, Uid: 1000, Gid: 1000, Mtime: wtTime},
			wtHeader{Name: "./null", Type: tar.TypeChar, Mode: 0o666, Uid: 1000, Gid: 1000, Mtime: wtTime, Major: 1, Minor: 3},
		)
	}
	for _, f := range []Format{FormatOverlay, FormatOCI} {
		t.Run(string(f), func(t *testing.T) {
			b := wtWriteEntries(t, f, wtGoldenEntries())
			got := wtReadTar(t, b)
			want := common(f)
			if len(got) != len(want) {
				t.Fatalf("got %d entries, want %d:\n%+v", len(got), len(want), got)
			}
			for i := range want {
				if !got[i].Mtime.Equal(want[i].Mtime) {
					t.Errorf("entry %d %s: mtime %v, want %v", i, got[i].Name, got[i].Mtime, want[i].Mtime)
				}
				got[i].Mtime, want[i].Mtime = time.Time{}, time.Time{}
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
			golden := filepath.Join("testdata", "writer_golden_"+string(f)+".tar")
			if *wtUpdateGolden {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want2, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update-writer to create)", err)
			}
			if !bytes.Equal(b, want2) {
				t.Errorf("bytes differ from %s (run with -update-writer if the change is intended)", golden)
			}
		})
	}
}

func TestWriterDeterministic(t *testing.T) {
	many := func() []wtEntry {
		es := wtGoldenEntries()
		recs := map[string]string{}
		for i := 0; i < 50; i++ {
			recs["SCHILY.xattr.user.k"+strings.Repeat("x", i)] = strings.Repeat("v", i)
		}
		es = append(es, wtEntry{e: Entry{Path: "zz", Header: &tar.Header{Typeflag: tar.TypeReg, Mode: 0o600,
			ModTime: wtTime, PAXRecords: recs, Size: 3}}, content: "abc"})
		return es
	}
	for _, f := range []Format{FormatOverlay, FormatOCI} {
		a := wtWriteEntries(t, f, many())
		for i := 0; i < 5; i++ {
			if b := wtWriteEntries(t, f, many()); !bytes.Equal(a, b) {
				t.Fatalf("%s: two writes of the same entries differ", f)
			}
		}
	}
}

func TestWriterOpaqueMarker(t *testing.T) {
	dir := func(p string, mode int64) Entry {
		return Entry{Path: p, Header: &tar.Header{Typeflag: tar.TypeDir, Mode: mode, Uid: 7, Gid: 8, ModTime: wtTime}}
	}
	file := func(p string) Entry {
		return Entry{Path: p, Header: &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, ModTime: wtTime}}
	}
	marker := func(p string) Entry { return Entry{Path: p, Opaque: true} }
	opq := map[string]string{XattrOpaque: "y"}
	type row struct {
		name  string
		f     Format
		in    []Entry
		names []string
		xattr []map[string]string
		modes []int64
	}
	for _, tc := range []row{
		{
			name: "overlay/merged into the directory just written", f: FormatOverlay,
			in:    []Entry{dir("", 0o755), dir("d", 0o700), marker("d"), file("d/f")},
			names: []string{"./", "./d/", "./d/f"}, xattr: []map[string]string{nil, opq, nil}, modes: []int64{0o755, 0o700, 0o644},
		},
		{
			name: "overlay/root", f: FormatOverlay,
			in:    []Entry{dir("", 0o711), marker("")},
			names: []string{"./"}, xattr: []map[string]string{opq}, modes: []int64{0o711},
		},
		{
			name: "overlay/no directory header: synthesized", f: FormatOverlay,
			in:    []Entry{marker("d"), file("d/f")},
			names: []string{"./d/", "./d/f"}, xattr: []map[string]string{opq, nil}, modes: []int64{0o755, 0o644},
		},
		{
			name: "overlay/after other entries: directory repeated", f: FormatOverlay,
			in:    []Entry{dir("d", 0o700), file("d/-x"), marker("d")},
			names: []string{"./d/", "./d/-x", "./d/"}, xattr: []map[string]string{nil, nil, opq}, modes: []int64{0o700, 0o644, 0o700},
		},
		{
			name: "overlay/twice", f: FormatOverlay,
			in:    []Entry{func() Entry { e := dir("d", 0o700); e.Opaque = true; return e }(), marker("d")},
			names: []string{"./d/"}, xattr: []map[string]string{opq}, modes: []int64{0o700},
		},
		{
			name: "oci/marker after opaque directory not repeated", f: FormatOCI,
			in:    []Entry{func() Entry { e := dir("d", 0o700); e.Opaque = true; return e }(), marker("d"), file("d/f")},
			names: []string{"./d/", "./d/.wh..wh..opq", "./d/f"}, xattr: []map[string]string{nil, nil, nil}, modes: []int64{0o700, 0, 0o644},
		},
		{
			name: "oci/marker", f: FormatOCI,
			in:    []Entry{dir("d", 0o700), marker("d"), marker("")},
			names: []string{"./d/", "./d/.wh..wh..opq", "./.wh..wh..opq"}, xattr: []map[string]string{nil, nil, nil}, modes: []int64{0o700, 0, 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []wtEntry
			for _, e := range tc.in {
				in = append(in, wtEntry{e: e})
			}
			got := wtReadTar(t, wtWriteEntries(t, tc.f, in))
			var names []string
			var xattrs []map[string]string
			var modes []int64
			for _, h := range got {
				names, xattrs, modes = append(names, h.Name), append(xattrs, h.Xattrs), append(modes, h.Mode)
			}
			if !reflect.DeepEqual(names, tc.names) || !reflect.DeepEqual(xattrs, tc.xattr) || !reflect.DeepEqual(modes, tc.modes) {
				t.Errorf("got %q %v %o\nwant %q %v %o", names, xattrs, modes, tc.names, tc.xattr, tc.modes)
			}
		})
	}
}

func TestWriterErrors(t *testing.T) {
	reg := func(p string, size int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: p, Size: size, Mode: 0o644}
	}
	for _, tc := range []struct {
		name    string
		f       Format
		e       Entry
		content io.Reader
		want    error
	}{
		{"absolute", FormatOverlay, Entry{Path: "/etc/x", Header: reg("x", 0)}, nil, ErrInsecurePath},
		{"dotdot", FormatOverlay, Entry{Path: "../x", Header: reg("x", 0)}, nil, ErrInsecurePath},
		{"unclean", FormatOverlay, Entry{Path: "a//b", Header: reg("x", 0)}, nil, ErrInsecurePath},
		{"link out", FormatOverlay, Entry{Path: "a", Header: &tar.Header{Typeflag: tar.TypeLink, Linkname: "../etc/shadow"}}, nil, ErrInsecurePath},
		{"whiteout root", FormatOCI, Entry{Path: "", Whiteout: true}, nil, ErrUnsupportedEntry},
		{"reserved name", FormatOCI, Entry{Path: "d/.wh.x", Header: reg("x", 0)}, nil, ErrUnsupportedEntry},
		{"reserved name whiteout", FormatOCI, Entry{Path: ".wh.x", Whiteout: true}, nil, ErrUnsupportedEntry},
		{"socket-like type", FormatOverlay, Entry{Path: "x", Header: &tar.Header{Typeflag: 'Z'}}, nil, ErrUnsupportedEntry},
		{"no header", FormatOverlay, Entry{Path: "x"}, nil, ErrUnsupportedEntry},
		{"short content", FormatOverlay, Entry{Path: "x", Header: reg("x", 10)}, strings.NewReader("abc"), io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter(io.Discard, tc.f)
			err := w.WriteEntry(&tc.e, tc.content)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err2 := w.Close(); err2 == nil {
				t.Errorf("Close after a failed WriteEntry succeeded")
			}
		})
	}
	if err := NewWriter(io.Discard, "zip").Close(); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestWriterNoRead checks that content is streamed, not buffered whole.
func TestWriterStreams(t *testing.T) {
	const size = 64 << 20
	w := NewWriter(io.Discard, FormatOverlay)
	e := Entry{Path: "big", Header: &tar.Header{Typeflag: tar.TypeReg, Size: size, Mode: 0o644}}
	r := &wtCountingReader{r: io.LimitReader(wtZeroReader{}, size)}
	if err := w.WriteEntry(&e, r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r.max > copyBufSize {
		t.Errorf("read %d bytes at once, want at most %d", r.max, copyBufSize)
	}
}

type wtZeroReader struct{}

func (wtZeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type wtCountingReader struct {
	r   io.Reader
	max int
}

func (c *wtCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.max = max(c.max, n)
	return n, err
}
