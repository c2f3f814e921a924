package tarheader

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tarEvents reads a whole stream with next/read and describes what it
// got: every header, every entry's content, and the error that ended it.
func tarEvents(next func() (*tar.Header, error), read io.Reader) (hdrs []*tar.Header, events []string) {
	for i := 0; i < 10000; i++ {
		h, err := next()
		if err != nil {
			return hdrs, append(events, fmt.Sprintf("next: %v", err))
		}
		hdrs = append(hdrs, h)
		var data bytes.Buffer
		_, err = io.Copy(&data, read)
		events = append(events, fmt.Sprintf("%q: %d bytes %x, %v", h.Name, data.Len(), data.Bytes()[:min(data.Len(), 32)], err))
		if err != nil {
			return hdrs, events
		}
	}
	return hdrs, append(events, "too many entries")
}

// compareReader reads b with Reader and with archive/tar and
// reports the first difference.
func compareReader(t testing.TB, name string, b []byte) {
	t.Helper()
	ts := NewReader(bytes.NewReader(b))
	gotH, got := tarEvents(ts.Next, ts)
	tr := tar.NewReader(bytes.NewReader(b))
	wantH, want := tarEvents(tr.Next, tr)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: Reader read\n%s\narchive/tar read\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range gotH {
		if !reflect.DeepEqual(gotH[i], wantH[i]) {
			t.Fatalf("%s: header %d:\n got %#v\nwant %#v", name, i, gotH[i], wantH[i])
		}
	}
}

// genTar writes n entries with varied headers through archive/tar.
func genTar(t testing.TB, rng *rand.Rand, n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	for i := 0; i < n; i++ {
		h := &tar.Header{
			Name:    "./" + pick("a", "etc/app.conf", "dir/", "ü/x", strings.Repeat("long/", 30)+"f", "n"+fmt.Sprint(i)),
			Mode:    []int64{0o644, 0o4755, 0}[rng.IntN(3)],
			Uid:     []int{0, 1000, 1 << 22}[rng.IntN(3)],
			Gid:     []int{0, 1000, 1 << 22}[rng.IntN(3)],
			ModTime: []time.Time{time.Unix(1700000000, 123456789), time.Unix(1700000000, 0), time.Unix(-3, 5)}[rng.IntN(3)],
			Format:  []tar.Format{tar.FormatPAX, tar.FormatPAX, tar.FormatGNU, tar.FormatUSTAR, tar.FormatUnknown}[rng.IntN(5)],
		}
		var body string
		switch rng.IntN(8) {
		case 0:
			h.Typeflag = tar.TypeDir
			h.Name = strings.TrimSuffix(h.Name, "/") + "/"
		case 1:
			h.Typeflag, h.Linkname = tar.TypeSymlink, pick("../x", strings.Repeat("t", 120))
		case 2:
			h.Typeflag, h.Linkname = tar.TypeLink, "./a"
		case 3:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 0, 0
		case 4:
			h = &tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "g"}}
		default:
			h.Typeflag = tar.TypeReg
			h.Name = strings.TrimSuffix(h.Name, "/")
			body = strings.Repeat(pick("x", "yz"), rng.IntN(1500))
			h.Size = int64(len(body))
		}
		if rng.IntN(3) == 0 && h.Typeflag != tar.TypeXGlobalHeader {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.a": pick("1", "", "\x00b"), "SCHILY.xattr.trusted.overlay.opaque": "y"}
			if rng.IntN(4) == 0 {
				h.PAXRecords["comment"] = "c"
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			continue // a combination archive/tar cannot write
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Reader reads every stream as archive/tar does: generated archives,
// GNU tar's and bsdtar's (sparse, long names, xattrs), the test data, and
// all of them truncated and corrupted.
func TestReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	streams := map[string][]byte{}
	for i := 0; i < 20; i++ {
		streams[fmt.Sprintf("generated %d", i)] = genTar(t, rng, 1+rng.IntN(30))
	}
	for _, f := range []string{"gvisor-upper.tar", "oci-layer.tar.gz", "writer_golden_oci.tar", "writer_golden_overlay.tar"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "pkg", "layer", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		streams[f] = b
	}
	for name, args := range map[string][]string{
		"GNU tar gnu":    {"tar", "--format=gnu", "--sparse"},
		"GNU tar posix":  {"tar", "--format=posix", "--sparse", "--xattrs"},
		"GNU tar oldgnu": {"tar", "--format=oldgnu", "--sparse"},
		"bsdtar pax":     {"bsdtar", "--format=pax"},
	} {
		if _, err := exec.LookPath(args[0]); err != nil {
			continue
		}
		src := t.TempDir()
		long := filepath.Join(src, strings.Repeat("d", 90), strings.Repeat("e", 90))
		if err := os.MkdirAll(long, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(long, "f"), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(src, "sparse"))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("head"), 0)
		f.WriteAt([]byte("tail"), 1<<20)
		f.Close()
		out, err := exec.Command(args[0], append(args[1:], "-C", src, "-cf", "-", ".")...).Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		streams[name] = out
	}
	for name, b := range streams {
		compareReader(t, name, b)
		for cut := 0; cut < len(b); cut += 1 + rng.IntN(700) {
			compareReader(t, fmt.Sprintf("%s cut at %d", name, cut), b[:cut])
		}
		for i := 0; i < 50; i++ {
			c := bytes.Clone(b)
			c[rng.IntN(len(c))] ^= byte(1 << rng.IntN(8))
			compareReader(t, fmt.Sprintf("%s corrupted %d", name, i), c)
		}
	}
}

func FuzzReader(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 4; i++ {
		f.Add(genTar(f, rng, 3))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		compareReader(t, "fuzz", b)
	})
}
