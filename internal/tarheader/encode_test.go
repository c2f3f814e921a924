package tarheader

import (
	"archive/tar"
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Append writes what archive/tar writes, for every header it
// accepts; the ones it declines include everything archive/tar refuses.
func TestAppend(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	name := func() string {
		switch rng.IntN(8) {
		case 0:
			return "./" + strings.Repeat("n", 95+rng.IntN(10)) // around the 100-byte field
		case 1:
			return pick("./ü", "./a\x00b", "", "./", "./a/", "./dir/sub/", "/abs")
		case 2:
			return "./" + strings.Repeat("d/", rng.IntN(60)) + "f"
		}
		return "./" + pick("a", "etc/app.conf", "usr/lib/x86_64-linux-gnu/libc.so.6", "node_modules/pkg/lib/m00.js")
	}
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(1700000000, 0), time.Unix(1700000000, 123456789),
		time.Unix(1700000000, 100), time.Unix(1, 999999999), time.Unix(-5, 3), time.Unix(1<<33, 0), time.Unix(1<<33-1, 7)}
	nums := []int64{0, 1, 0o644, 0o7777, 0o7777777, 0o10000000, 1 << 32, -1}
	types := []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader, 'Z'}
	encoded := 0
	for i := 0; i < 30000; i++ {
		h := &tar.Header{
			Typeflag: types[rng.IntN(len(types))],
			Name:     name(),
			Mode:     nums[rng.IntN(4)],
			Uid:      int(nums[rng.IntN(len(nums)-2)]),
			Gid:      int(nums[rng.IntN(len(nums)-2)]),
			ModTime:  times[rng.IntN(len(times))],
			Format:   tar.FormatPAX,
		}
		if rng.IntN(4) == 0 {
			h.Mode = nums[rng.IntN(len(nums))]
		}
		switch h.Typeflag {
		case tar.TypeReg:
			h.Size = []int64{0, 1, 511, 512, 4096, 8 << 30, 8<<30 - 1, -1}[rng.IntN(8)]
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = name()
		case tar.TypeChar, tar.TypeBlock:
			h.Devmajor, h.Devminor = nums[rng.IntN(len(nums))], nums[rng.IntN(len(nums))]
		}
		if rng.IntN(3) == 0 {
			h.PAXRecords = map[string]string{}
			for j := rng.IntN(4); j >= 0; j-- {
				k := pick("SCHILY.xattr.user.a", "SCHILY.xattr.security.selinux", "SCHILY.xattr.trusted.overlay.opaque",
					"SCHILY.xattr.user.=x", "SCHILY.xattr.user.\x00", "SCHILY.xattr.", "comment", "path", "mtime")
				h.PAXRecords[k] = pick("y", "", "\x00\x01binary", strings.Repeat("v", rng.IntN(300)))
				if rng.IntN(500) == 0 {
					h.PAXRecords[k] = strings.Repeat("w", 1<<20) // over archive/tar's limit
				}
			}
		}
		switch rng.IntN(20) {
		case 0:
			h.Uname = "root"
		case 1:
			h.AccessTime = time.Unix(5, 5)
		case 2:
			h.Format = tar.FormatUnknown
		}
		var want bytes.Buffer
		werr := tar.NewWriter(&want).WriteHeader(h)
		got, ok := Append(nil, h)
		switch {
		case ok && werr != nil:
			t.Fatalf("%+v: encoded, archive/tar: %v", h, werr)
		case ok && !bytes.Equal(got, want.Bytes()):
			t.Fatalf("%+v:\n got %q\nwant %q", h, got, want.Bytes())
		case !ok && len(got) != 0:
			t.Fatalf("%+v: declined but appended %d bytes", h, len(got))
		case ok:
			encoded++
		}
	}
	t.Logf("%d of 30000 headers encoded directly", encoded)
	if encoded < 3000 {
		t.Errorf("only %d of the headers encoded directly", encoded)
	}
}
