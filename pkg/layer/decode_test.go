package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/ocisnap/ocisnap/internal/tarheader"
	"github.com/ocisnap/ocisnap/internal/testutil"
)

var updateReadGolden = flag.Bool("update-read", false, "rewrite the Reader's golden snapshots in testdata/")

func compress(t testing.TB, b []byte, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := Compress(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// got is an Entry as a test compares it, with the content read.
type got struct {
	Path     string
	Type     byte // 0 for a marker-only entry
	Whiteout bool
	Opaque   bool
	Link     string
	Body     string
}

func readEntries(t testing.TB, b []byte) ([]got, []*Entry, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var gs []got
	var es []*Entry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return gs, es, nil
		}
		if err != nil {
			return gs, es, err
		}
		body, err := io.ReadAll(r)
		if err != nil {
			return gs, es, err
		}
		g := got{Path: e.Path, Whiteout: e.Whiteout, Opaque: e.Opaque, Body: string(body)}
		if e.Header != nil {
			g.Type = e.Header.Typeflag
			if e.Header.Typeflag == tar.TypeLink || e.Header.Typeflag == tar.TypeSymlink {
				g.Link = e.Header.Linkname
			}
		}
		gs = append(gs, g)
		es = append(es, e)
	}
}

func mustRead(t testing.TB, b []byte) ([]got, []*Entry) {
	t.Helper()
	gs, es, err := readEntries(t, b)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return gs, es
}

// gvisorUpper is shaped like `runsc tar rootfs-upper` output: "./" root,
// char 0/0 whiteouts with the second and later ones hard links to the
// first, trusted.overlay.opaque=y, numeric ids, no user or group names.
func gvisorUpper() []testutil.Node {
	opaqueDir := testutil.Dir("./etc/").WithPAX("SCHILY.xattr.trusted.overlay.opaque", "y", "SCHILY.xattr.user.keep", "1")
	opaqueDir.Header.Uid, opaqueDir.Header.Gid = 1234, 5678
	return []testutil.Node{
		testutil.Dir("./"),
		opaqueDir,
		testutil.File("./etc/app.conf", "key=value\n").WithPAX("SCHILY.xattr.user.origin", "snapshot"),
		testutil.Whiteout("./gone"),
		testutil.Dir("./var/"),
		testutil.Hardlink("./var/gone2", "./gone"),
		testutil.Hardlink("./var/gone3", "gone"),
		testutil.Dir("./var/lib/").WithPAX("SCHILY.xattr.user.overlay.opaque", "y"),
		testutil.Hardlink("./var/lib/conf", "./etc/app.conf"),
		testutil.Symlink("./var/lib/sym", "/etc/app.conf"),
		testutil.Dir("./var/redir/").WithPAX("SCHILY.xattr.trusted.overlay.redirect", "/old", "SCHILY.xattr.trusted.overlay.opaque", "x"),
	}
}

var gvisorWant = []got{
	{Path: "", Type: tar.TypeDir},
	{Path: "etc", Type: tar.TypeDir, Opaque: true},
	{Path: "etc/app.conf", Type: tar.TypeReg, Body: "key=value\n"},
	{Path: "gone", Type: tar.TypeChar, Whiteout: true},
	{Path: "var", Type: tar.TypeDir},
	{Path: "var/gone2", Type: tar.TypeLink, Whiteout: true, Link: "gone"},
	{Path: "var/gone3", Type: tar.TypeLink, Whiteout: true, Link: "gone"},
	{Path: "var/lib", Type: tar.TypeDir, Opaque: true},
	{Path: "var/lib/conf", Type: tar.TypeLink, Link: "etc/app.conf"},
	{Path: "var/lib/sym", Type: tar.TypeSymlink, Link: "/etc/app.conf"},
	{Path: "var/redir", Type: tar.TypeDir},
}

func TestReadOverlayFormat(t *testing.T) {
	gs, es := mustRead(t, testutil.Tar(t, gvisorUpper()...))
	if !reflect.DeepEqual(gs, gvisorWant) {
		t.Fatalf("entries:\n got %+v\nwant %+v", gs, gvisorWant)
	}
	for _, e := range es {
		for k := range e.Header.PAXRecords {
			if strings.Contains(k, ".overlay.") {
				t.Errorf("%s: overlay record %q left in PAXRecords", e.Path, k)
			}
		}
		for k := range e.Header.Xattrs { //nolint:staticcheck // archive/tar still fills it
			if strings.Contains(k, ".overlay.") {
				t.Errorf("%s: overlay xattr %q left in Xattrs", e.Path, k)
			}
		}
	}
	if v := es[1].Header.PAXRecords["SCHILY.xattr.user.keep"]; v != "1" {
		t.Errorf("etc: user.keep = %q, want it kept", v)
	}
	if h := es[1].Header; h.Name != "./etc/" || h.Uid != 1234 || h.Gid != 5678 {
		t.Errorf("etc header: name %q ids %d:%d", h.Name, h.Uid, h.Gid)
	}
	if h := es[2].Header; h.Name != "./etc/app.conf" || !h.ModTime.Equal(testutil.BuildTime) {
		t.Errorf("app.conf header: name %q mtime %v", h.Name, h.ModTime)
	}
	if es[0].Header.Name != "./" {
		t.Errorf("root header name %q, want ./", es[0].Header.Name)
	}
}

func TestReadOCIFormat(t *testing.T) {
	b := testutil.Tar(t,
		testutil.Dir("dir/"),
		testutil.File("dir/.wh..wh..opq", ""),
		testutil.File("dir/.wh.old", ""),
		testutil.File("dir/new", "n"),
		testutil.File(".wh.top", ""),
		testutil.Dir("sub/"),
		testutil.File("sub/.wh.gonedir", ""),
		testutil.File(".wh..wh.plnk/123", "aufs"), // AUFS metadata: skipped
		testutil.File(".wh..wh..opq", ""),         // the root itself opaque
	)
	gs, es := mustRead(t, b)
	want := []got{
		{Path: "dir", Type: tar.TypeDir},
		{Path: "dir", Opaque: true},
		{Path: "dir/old", Type: tar.TypeReg, Whiteout: true},
		{Path: "dir/new", Type: tar.TypeReg, Body: "n"},
		{Path: "top", Type: tar.TypeReg, Whiteout: true},
		{Path: "sub", Type: tar.TypeDir},
		{Path: "sub/gonedir", Type: tar.TypeReg, Whiteout: true},
		{Path: "", Opaque: true},
	}
	if !reflect.DeepEqual(gs, want) {
		t.Fatalf("entries:\n got %+v\nwant %+v", gs, want)
	}
	if es[1].Header != nil {
		t.Errorf("opaque marker has a header: %+v", es[1].Header)
	}
	if es[2].Header.Name != "./dir/old" {
		t.Errorf("whiteout header name %q, want ./dir/old", es[2].Header.Name)
	}
}

func TestReadMixedFormats(t *testing.T) {
	b := testutil.Tar(t,
		testutil.Dir("./"),
		testutil.Whiteout("./a"),
		testutil.File("./.wh.b", ""),
		testutil.Dir("./c/").WithPAX("SCHILY.xattr.trusted.overlay.opaque", "y"),
		testutil.File("./c/.wh..wh..opq", ""),
		testutil.Hardlink("./c/d", "./a"),     // hard link to a char 0/0 whiteout
		testutil.Hardlink("./c/e", "./.wh.b"), // hard link to an OCI whiteout file
	)
	gs, _ := mustRead(t, b)
	want := []got{
		{Path: "", Type: tar.TypeDir},
		{Path: "a", Type: tar.TypeChar, Whiteout: true},
		{Path: "b", Type: tar.TypeReg, Whiteout: true},
		{Path: "c", Type: tar.TypeDir, Opaque: true},
		{Path: "c", Opaque: true},
		{Path: "c/d", Type: tar.TypeLink, Whiteout: true, Link: "a"},
		{Path: "c/e", Type: tar.TypeLink, Whiteout: true, Link: ".wh.b"},
	}
	if !reflect.DeepEqual(gs, want) {
		t.Fatalf("entries:\n got %+v\nwant %+v", gs, want)
	}
}

// A name that held a whiteout and then something else is no longer a
// whiteout for later hard links.
func TestReadWhiteoutNameReused(t *testing.T) {
	gs, _ := mustRead(t, testutil.Tar(t, testutil.Whiteout("a"), testutil.File("a", "x"), testutil.Hardlink("b", "a")))
	if gs[2].Whiteout {
		t.Fatalf("b links to the file a, got a whiteout: %+v", gs)
	}
}

func TestReadDevicesAreNotWhiteouts(t *testing.T) {
	dev := testutil.Whiteout("null")
	dev.Header.Devmajor, dev.Header.Devminor = 1, 3
	gs, _ := mustRead(t, testutil.Tar(t, dev))
	if gs[0].Whiteout {
		t.Fatal("char 1:3 read as a whiteout")
	}
}

func TestReadInsecureNames(t *testing.T) {
	tests := []struct {
		name  string
		entry testutil.Node
		want  string // in the error
	}{
		{"dotdot", testutil.File("../x", ""), `"../x"`},
		{"absolute", testutil.File("/abs", ""), `"/abs"`},
		{"dotdot escape in the middle", testutil.File("a/../../x", ""), `"a/../../x"`},
		{"dotdot that stays inside", testutil.File("a/../b", ""), `"a/../b"`},
		{"dot-slash dotdot", testutil.File("./../x", ""), `"./../x"`},
		{"trailing dotdot", testutil.Dir("a/.."), `"a/.."`},
		{"empty", testutil.File("", ""), `""`},
		{"absolute root", testutil.Dir("/"), `"/"`},
		{"hard link to an absolute path", testutil.Hardlink("x", "/etc/shadow"), `"/etc/shadow"`},
		{"hard link out of the root", testutil.Hardlink("x", "../victim"), `"../victim"`},
		{"hard link with dotdot inside", testutil.Hardlink("x", "a/../b"), `"a/../b"`},
		{"hard link to the root", testutil.Hardlink("x", "./"), `"./"`},
		{"hard link to nothing", testutil.Hardlink("x", ""), `"x"`},
		{"OCI whiteout out of the root", testutil.File("../.wh.victim", ""), `"../.wh.victim"`},
		{"OCI whiteout of dotdot", testutil.File("a/.wh...", ""), `"a/.wh..."`},
		{"OCI whiteout of dot", testutil.File("a/.wh..", ""), `"a/.wh.."`},
		{"OCI whiteout of nothing", testutil.File("a/.wh.", ""), `"a/.wh."`},
		{"char-dev whiteout out of the root", testutil.Whiteout("../victim"), `"../victim"`},
		{"opaque marker out of the root", testutil.File("../.wh..wh..opq", ""), `"../.wh..wh..opq"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readEntries(t, testutil.Tar(t, testutil.Dir("./"), tt.entry))
			if !errors.Is(err, ErrInsecurePath) {
				t.Fatalf("err = %v, want ErrInsecurePath", err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestCleanEntryName(t *testing.T) {
	for in, want := range map[string]string{
		"./": "", ".": "", "./a": "a", "a/": "a", ".//a//b/./c/": "a/b/c", "./.wh.x": ".wh.x", "...": "...", "a/..b": "a/..b",
	} {
		got, err := cleanEntryName(in)
		if err != nil || got != want {
			t.Errorf("cleanEntryName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/", "/a", "..", "../", "a/..", "a/../b", "a\x00b", "./../a"} {
		if got, err := cleanEntryName(in); !errors.Is(err, ErrInsecurePath) {
			t.Errorf("cleanEntryName(%q) = %q, %v; want ErrInsecurePath", in, got, err)
		}
	}
}

func TestReadIntegrity(t *testing.T) {
	entries := []testutil.Node{testutil.Dir("./"), testutil.File("./a", strings.Repeat("A", 1000)), testutil.File("./b", "bbbb")}
	valid := testutil.Tar(t, entries...)
	n := len(valid)
	// offsets: ./ header 0-1024 (PAX header + data? no: plain ustar) ...
	bodyA := bytes.Index(valid, []byte("AAAA"))
	bigPAX := testutil.Tar(t, testutil.File("./p", "").WithPAX("SCHILY.xattr.user.big", strings.Repeat("v", 700)))
	// The PAX extended header is a header block plus 2 data blocks; the
	// cut leaves it without the entry it describes.
	paxOnly := bigPAX[:3*tarheader.BlockSize]

	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0xff
		return c
	}
	gz := compress(t, valid, CompressionGzip)
	zs := compress(t, valid, CompressionZstd)

	tests := []struct {
		name string
		in   []byte
		want error  // nil: reads fine
		msg  string // in the error
	}{
		{"valid", valid, nil, ""},
		{"no entries", make([]byte, 2*tarheader.BlockSize), nil, ""},
		{"trailing zeros (GNU tar record padding)", append(bytes.Clone(valid), make([]byte, 10240-n%10240)...), nil, ""},
		{"gzip", gz, nil, ""},
		{"zstd", zs, nil, ""},
		{"truncated at an entry boundary", valid[:n-2*tarheader.BlockSize], ErrTruncated, "no end-of-archive"},
		{"only one end-of-archive block", valid[:n-tarheader.BlockSize], ErrTruncated, "no end-of-archive"},
		{"truncated inside the file", valid[:bodyA+500], ErrTruncated, `"./a"`},
		{"truncated inside a header", valid[:bodyA+1024+100], ErrTruncated, ""},
		{"truncated after a PAX header", paxOnly, ErrTruncated, ""},
		{"trailing garbage", append(bytes.Clone(valid), "garbage"...), ErrTrailingData, ""},
		{"garbage after zero padding", append(append(bytes.Clone(valid), make([]byte, 4096)...), 1), ErrTrailingData, ""},
		{"not a tar", []byte(strings.Repeat("this is not a tar archive at all\n", 40)), nil, "not a tar archive"},
		{"short non-tar", []byte("hello"), ErrTruncated, "not a tar archive"},
		{"empty", nil, ErrTruncated, "not a tar archive"},
		{"gzip with a bad CRC", flip(gz, len(gz)-8), gzip.ErrChecksum, "gzip stream"},
		{"gzip with a bad length", flip(gz, len(gz)-1), gzip.ErrChecksum, "gzip stream"},
		{"gzip truncated", gz[:len(gz)-4], ErrTruncated, "gzip stream"},
		{"gzip with garbage after it", append(bytes.Clone(gz), "junk after the gzip stream"...), gzip.ErrHeader, "gzip stream"},
		{"zstd with a bad checksum", flip(zs, len(zs)-1), zstd.ErrCRCMismatch, "zstd stream"},
		{"zstd truncated", zs[:len(zs)-6], ErrTruncated, "zstd stream"},
		{"gzip of a truncated tar", compress(t, valid[:n-2*tarheader.BlockSize], CompressionGzip), ErrTruncated, ""},
		{"zstd of trailing garbage", compress(t, append(bytes.Clone(valid), 'x'), CompressionZstd), ErrTrailingData, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readEntries(t, tt.in)
			if tt.want == nil && tt.msg == "" {
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("read succeeded, want an error")
			}
			t.Log(err)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want it to mention %q", err, tt.msg)
			}
		})
	}
}

// A Reader that stops being read keeps returning its error.
func TestReadStickyError(t *testing.T) {
	r, err := NewReader(bytes.NewReader(testutil.Tar(t, testutil.File("../x", ""))))
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors %v then %v", err1, err2)
	}
}

// Next skips content the caller did not read; Read returns io.EOF at once
// for entries without content.
func TestReadSkipsUnreadContent(t *testing.T) {
	b := testutil.Tar(t, testutil.File("a", strings.Repeat("x", 5000)), testutil.Whiteout("w"), testutil.File("b", "bee"))
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if e, err := r.Next(); err != nil || !e.Whiteout {
		t.Fatalf("Next = %+v, %v", e, err)
	}
	if n, err := r.Read(make([]byte, 10)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read of a whiteout = %d, %v", n, err)
	}
	if e, err := r.Next(); err != nil || e.Path != "b" {
		t.Fatalf("Next = %+v, %v", e, err)
	}
	if body, err := io.ReadAll(r); err != nil || string(body) != "bee" {
		t.Fatalf("body %q, %v", body, err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next at end = %v", err)
	}
}

func TestCompressRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte("ocisnap "), 100000)
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd, ""} {
		t.Run(string(c), func(t *testing.T) {
			b := compress(t, payload, c)
			if c == CompressionGzip || c == CompressionZstd {
				if len(b) >= len(payload)/10 {
					t.Errorf("%s: %d bytes from %d", c, len(b), len(payload))
				}
			}
			rc, got, err := Decompress(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			want := c
			if want == "" {
				want = CompressionNone
			}
			if got != want {
				t.Errorf("detected %q, want %q", got, want)
			}
			out, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(out, payload) {
				t.Fatalf("round trip: %d bytes, %v", len(out), err)
			}
		})
	}
	if _, err := Compress(io.Discard, "lz4"); !errors.Is(err, ErrUnknownCompression) {
		t.Errorf("Compress(lz4) = %v", err)
	}
}

// TestZstdWindow: Compress writes zstd frames with a 2 MiB window
// (zstdWindow), which bounds what the export and a restore of it hold in
// memory, also for a stream far larger than the window.
func TestZstdWindow(t *testing.T) {
	payload := make([]byte, 24<<20)
	for i := range payload {
		payload[i] = byte(i * 7 / 5)
	}
	var h zstd.Header
	if err := h.Decode(compress(t, payload, CompressionZstd)); err != nil {
		t.Fatal(err)
	}
	if h.WindowSize != zstdWindow {
		t.Errorf("window %d bytes, want %d", h.WindowSize, zstdWindow)
	}
}

func TestReadCompression(t *testing.T) {
	b := testutil.Tar(t, gvisorUpper()...)
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd} {
		r, err := NewReader(bytes.NewReader(compress(t, b, c)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Compression() != c {
			t.Errorf("Compression() = %q, want %q", r.Compression(), c)
		}
		r.Close()
		gs, _ := mustRead(t, compress(t, b, c))
		if !reflect.DeepEqual(gs, gvisorWant) {
			t.Errorf("%s: entries differ: %+v", c, gs)
		}
	}
}

// Golden snapshots: small archives in testdata/, generated by this test
// with -update-read, read back on every run.
func TestReadGolden(t *testing.T) {
	golden := []struct {
		file    string
		entries []testutil.Node
		c       Compression
		want    []got
	}{
		{"gvisor-upper.tar", gvisorUpper(), CompressionNone, gvisorWant},
		{"oci-layer.tar.gz", []testutil.Node{
			testutil.Dir("etc/"),
			testutil.File("etc/.wh..wh..opq", ""),
			testutil.File("etc/hostname", "snap\n"),
			testutil.File(".wh.tmp", ""),
		}, CompressionGzip, []got{
			{Path: "etc", Type: tar.TypeDir},
			{Path: "etc", Opaque: true},
			{Path: "etc/hostname", Type: tar.TypeReg, Body: "snap\n"},
			{Path: "tmp", Type: tar.TypeReg, Whiteout: true},
		}},
	}
	for _, g := range golden {
		t.Run(g.file, func(t *testing.T) {
			file := filepath.Join("testdata", g.file)
			if *updateReadGolden {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, compress(t, testutil.Tar(t, g.entries...), g.c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update-read to create it)", err)
			}
			gs, _ := mustRead(t, b)
			if !reflect.DeepEqual(gs, g.want) {
				t.Fatalf("entries:\n got %+v\nwant %+v", gs, g.want)
			}
		})
	}
}

func ExampleReader() {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755},
		{Typeflag: tar.TypeChar, Name: "./deleted"},                 // overlay whiteout
		{Typeflag: tar.TypeReg, Name: "./etc/.wh.old", Mode: 0o644}, // OCI whiteout
	} {
		_ = tw.WriteHeader(h)
	}
	_ = tw.Close()

	r, err := NewReader(&buf)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Printf("%q whiteout=%v\n", e.Path, e.Whiteout)
	}
	// Output:
	// "" whiteout=false
	// "deleted" whiteout=true
	// "etc/old" whiteout=true
}

// FuzzReader: any stream either reads to a clean io.EOF or fails; it never
// panics, and every Entry it yields has a clean, relative path.
func FuzzReader(f *testing.F) {
	f.Add(testutil.Tar(f, gvisorUpper()...))
	f.Add(testutil.Tar(f, testutil.Dir("d/"), testutil.File("d/.wh..wh..opq", ""), testutil.File("d/.wh.x", ""), testutil.Hardlink("l", "d/x")))
	f.Add(compress(f, testutil.Tar(f, testutil.File("a", "b")), CompressionGzip))
	f.Add(compress(f, testutil.Tar(f, testutil.File("a", "b")), CompressionZstd))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		defer r.Close()
		for {
			e, err := r.Next()
			if err != nil {
				return
			}
			for _, p := range []string{e.Path, linkTarget(e)} {
				if p == "" {
					continue
				}
				if c, err := cleanEntryName(p); err != nil || c != p {
					t.Fatalf("entry path %q not clean: %q, %v", p, c, err)
				}
			}
			// Bounded: a sparse entry may claim exabytes of holes.
			if _, err := io.CopyN(io.Discard, r, 1<<20); err != nil && err != io.EOF {
				return
			}
		}
	})
}

func linkTarget(e *Entry) string {
	if e.Header != nil && e.Header.Typeflag == tar.TypeLink {
		return e.Header.Linkname
	}
	return ""
}
