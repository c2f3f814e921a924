package upperrec

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/layer"
)

// TestRecordLines: every entry reads back as written, at the edges of its
// numbers and with paths that need quoting; a damaged line is ErrCorrupt,
// never a wrong entry.
func TestRecordLines(t *testing.T) {
	long := strings.Repeat("\xff/", 40<<10) + "x" // quoted, longer than the reader's buffer
	entries := []Entry{
		{Tag: TagEngine, Path: "etc/mtab", ID: layer.FileID{Ino: 1, CtimeNs: 0, Size: 0, Mode: 0o120777}},
		{Tag: TagRestored, Path: "a b/\"q\"\n\\", ID: layer.FileID{Ino: math.MaxUint64, CtimeNs: math.MaxInt64, Size: math.MaxInt64, Mode: math.MaxUint32}, Opaque: true},
		{Tag: TagRestored, Path: "old", ID: layer.FileID{Ino: 7, CtimeNs: math.MinInt64, Size: -1, Mode: 0o40755}},
		{Tag: TagRestored, Path: long, ID: layer.FileID{Ino: 9, CtimeNs: 1, Size: 2, Mode: 0o100644}},
	}
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "rec")
		if err := os.WriteFile(p, []byte(`{"version":1}`+"\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var body []byte
	for _, e := range entries {
		body = appendEntry(body, e.Tag, e.Path, e.ID, e.Opaque)
	}
	r, _, err := Open(write(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range entries {
		got, ok, err := r.Next()
		if err != nil || !ok || got != want {
			t.Fatalf("entry %d: got %+v ok=%v err=%v, want %+v", i, got, ok, err, want)
		}
	}
	if _, ok, err := r.Next(); ok || err != nil {
		t.Fatalf("past the end: ok=%v err=%v", ok, err)
	}
	r.Close()

	for _, bad := range []string{
		"R 1 2 3 4 0 \"a\"",    // no newline
		"X 1 2 3 4 0 \"a\"\n",  // tag
		"R 1 2 3 4 \"a\"\n",    // a field short
		"R 1 2 3 4 0\n",        // no path
		"R 1 2 3 4 0 a\n",      // unquoted
		"R 1 2 3 4 0 \"\"\n",   // empty path
		"R -1 2 3 4 0 \"a\"\n", // negative inode
		"R 1 2 3 -4 0 \"a\"\n", // negative mode
		"R 1 2 3 4294967296 0 \"a\"\n",
		"R 18446744073709551616 2 3 4 0 \"a\"\n",
		"R 1 9223372036854775808 3 4 0 \"a\"\n",
		"R 1 2x 3 4 0 \"a\"\n",
		"R 1  3 4 0 \"a\"\n",
		"R 1 2 3 4 0 \"a\"b\"\n",
	} {
		r, _, err := Open(write(bad))
		if err != nil {
			t.Fatal(err)
		}
		e, ok, err := r.Next()
		r.Close()
		if !errors.Is(err, ErrCorrupt) || ok {
			t.Errorf("%q: got %+v ok=%v err=%v, want ErrCorrupt", bad, e, ok, err)
		}
	}
}
