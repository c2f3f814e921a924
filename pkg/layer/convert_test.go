//go:build linux

package layer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// ctUpper builds an upper directory with everything a snapshot can hold:
// whiteouts (also sharing one inode, also the xattr form), opaque
// directories, hard links, symlinks, a fifo, a device, xattrs, setuid,
// nanosecond mtimes, a large uid, long and non-ASCII names, a large file.
func ctUpper(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	upper := t.TempDir()
	big := make([]byte, 2<<20+3)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("long-name-", 12)
	testutil.BuildTree(t, upper,
		testutil.File("d/"+long+"/"+long, "deep"),
		testutil.Dir("a/b/c/d/e/f/g/h/i/j/k/l/"),
		testutil.File("big", string(big)),
		testutil.Dir("empty-opq/"),
		testutil.File("etc/app.conf", "conf\n"),
		testutil.File("etc/hard", ""),
		testutil.File("opq/new", "n"),
		testutil.File("opq/sub/x", "x"),
		testutil.Symlink("sym", "/etc/app.conf"),
		testutil.File("ünïcødé/файл", "utf8"),
	)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(n string) string { return filepath.Join(upper, n) }
	must(os.Remove(p("etc/hard")))
	must(os.Link(p("etc/app.conf"), p("etc/hard")))
	must(os.Link(p("etc/app.conf"), p("opq/conf-link")))
	must(unix.Mknod(p("gone"), unix.S_IFCHR, 0))
	must(os.Link(p("gone"), p("etc/gone")))
	must(os.Link(p("gone"), p("opq/sub/gone")))
	must(os.WriteFile(p("etc/xwo"), nil, 0o644))
	must(unix.Setxattr(p("etc/xwo"), XattrWhiteout, nil, 0))
	must(unix.Setxattr(p("opq"), XattrOpaque, []byte("y"), 0))
	must(unix.Setxattr(p("empty-opq"), XattrOpaque, []byte("y"), 0))
	must(unix.Setxattr(p("etc"), XattrOpaque, []byte("x"), 0)) // not opaque
	must(unix.Setxattr(p("etc/app.conf"), "user.one", []byte("1"), 0))
	must(unix.Setxattr(p("etc/app.conf"), "trusted.other", []byte("\x00\x01"), 0))
	must(unix.Mkfifo(p("fifo"), 0o600))
	must(unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.Chmod(p("big"), 0o755|os.ModeSetuid))
	must(os.Lchown(p("big"), 3000000, 3000001))
	ts := time.Unix(1234567890, 123456789)
	must(os.Chtimes(p("etc/app.conf"), ts, ts))
	return upper
}

func ctConvert(t testing.TB, in []byte, f Format, c Compression) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := Convert(context.Background(), &out, bytes.NewReader(in), f, c); err != nil {
		t.Fatalf("Convert to %s/%s: %v", f, c, err)
	}
	return out.Bytes()
}

func otherFormat(f Format) Format {
	if f == FormatOverlay {
		return FormatOCI
	}
	return FormatOverlay
}

func TestConvertRoundTrip(t *testing.T) {
	upper := ctUpper(t)
	written := map[Format][]byte{}
	for _, f := range []Format{FormatOverlay, FormatOCI} {
		written[f], _ = wtWrite(t, upper, WithFormat(f))
	}
	for _, f := range []Format{FormatOverlay, FormatOCI} {
		t.Run(string(f), func(t *testing.T) {
			orig, other := written[f], otherFormat(f)
			conv := ctConvert(t, orig, other, CompressionNone)
			if !bytes.Equal(conv, written[other]) {
				t.Errorf("%s→%s differs from Write in %s", f, other, other)
			}
			if back := ctConvert(t, conv, f, CompressionNone); !bytes.Equal(back, orig) {
				t.Errorf("%s→%s→%s is not byte-identical", f, other, f)
			}
			if same := ctConvert(t, orig, f, CompressionNone); !bytes.Equal(same, orig) {
				t.Errorf("%s→%s changed the bytes", f, f)
			}
			for _, c := range []Compression{CompressionGzip, CompressionZstd} {
				z := ctConvert(t, orig, other, c)
				rc, got, err := Decompress(bytes.NewReader(z))
				if err != nil || got != c {
					t.Fatalf("%s: Decompress: %v, %v", c, got, err)
				}
				plain, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(plain, written[other]) {
					t.Errorf("%s: decompressed conversion differs (%v)", c, err)
				}
				if back := ctConvert(t, z, f, CompressionNone); !bytes.Equal(back, orig) {
					t.Errorf("%s→%s+%s→%s is not byte-identical", f, other, c, f)
				}
			}
		})
	}
}

// TestConvertForeign converts layers written by other tools: after one
// conversion the encoding is canonical, and further round trips are
// byte-identical.
func TestConvertForeign(t *testing.T) {
	for _, name := range []string{"gvisor-upper.tar", "oci-layer.tar.gz"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatalf("golden layer %s: %v", name, err)
			}
			for _, f := range []Format{FormatOverlay, FormatOCI} {
				a := ctConvert(t, in, f, CompressionNone)
				b := ctConvert(t, a, otherFormat(f), CompressionZstd)
				if c := ctConvert(t, b, f, CompressionNone); !bytes.Equal(a, c) {
					t.Errorf("%s: canonical %s layer changed in a round trip", name, f)
				}
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Convert(ctx, io.Discard, strings.NewReader(""), "tgz", CompressionNone); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("bad format: %v", err)
	}
	if _, err := Convert(ctx, io.Discard, strings.NewReader(""), FormatOCI, "lz4"); !errors.Is(err, ErrUnknownCompression) {
		t.Errorf("bad compression: %v", err)
	}
	// A snapshot cut short is an error, not a shorter snapshot.
	good := writeGolden(t)
	for _, cut := range []int{len(good) - 1024, 1536, 700} {
		if _, err := Convert(ctx, io.Discard, bytes.NewReader(good[:cut]), FormatOCI, CompressionNone); !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: %v, want ErrTruncated", cut, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Convert(cctx, io.Discard, bytes.NewReader(good), FormatOCI, CompressionNone); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func writeGolden(t testing.TB) []byte {
	t.Helper()
	return wtWriteEntries(t, FormatOverlay, wtGoldenEntries())
}
