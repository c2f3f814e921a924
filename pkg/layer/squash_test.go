package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

func TestComparePaths(t *testing.T) {
	order := []string{"", "a", "a/b", "a/b/c", "a-c", "a.b", "ab", "b"}
	for i := range order {
		for j := range order {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := ComparePaths(order[i], order[j]); got != want {
				t.Errorf("ComparePaths(%q, %q) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
}

func squashEntriesOf(t *testing.T, layers ...[]byte) (string, error) {
	t.Helper()
	rs := make([]io.Reader, len(layers))
	for i, l := range layers {
		rs[i] = bytes.NewReader(l)
	}
	var out bytes.Buffer
	if _, err := Squash(context.Background(), &out, rs, FormatOverlay, CompressionNone); err != nil {
		return "", err
	}
	rd, err := NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return strings.Join(names, " "), nil
		}
		if err != nil {
			t.Fatal(err)
		}
		n := "./" + e.Path
		switch {
		case e.Whiteout:
			n += "(wh)"
		case e.Opaque:
			n += "(opq)"
		case e.Header.Size > 0:
			b, _ := io.ReadAll(rd)
			n += "=" + string(b)
		}
		names = append(names, n)
	}
}

// TestSquash: the newest entry wins; whiteouts, files and opaque
// directories hide older entries beneath them (an oci-format opaque marker
// too); a directory over a whiteout becomes opaque.
func TestSquash(t *testing.T) {
	l0 := testutil.Tar(t, testutil.Dir("./"), testutil.Dir("d/"), testutil.File("d/a", "a0"), testutil.File("d/b", "b0"),
		testutil.Dir("e/"), testutil.File("e/x", "x0"), testutil.Dir("f/"), testutil.File("f/y", "y0"), testutil.File("k", "k0"))
	l1 := testutil.Tar(t, testutil.Dir("./"), testutil.Dir("d/"), testutil.File("d/a", "a1"), testutil.Whiteout("d/.wh.b"),
		testutil.Whiteout(".wh.e"), testutil.File("f", "now a file"), testutil.Whiteout(".wh.g"))
	l2 := testutil.Tar(t, testutil.Dir("./"), testutil.Dir("e/"), testutil.File("e/new", "n"), testutil.Dir("h/"),
		testutil.Whiteout("h/.wh..wh..opq"), testutil.File("h/z", "z"))
	got, err := squashEntriesOf(t, l0, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	want := "./ ./d ./d/a=a1 ./d/b(wh) ./e(opq) ./e/new=n ./f=now a file ./g(wh) ./h(opq) ./h/z=z ./k=k0"
	if got != want {
		t.Fatalf("squash:\n got %s\nwant %s", got, want)
	}
}

// TestSquashRefusesUnorderedAndStaleLinks: a layer out of walk order, and a
// hard link to a file a later layer replaced, are refused.
func TestSquashRefusesUnorderedAndStaleLinks(t *testing.T) {
	bad := testutil.Tar(t, testutil.Dir("./"), testutil.File("b", "b"), testutil.File("a", "a"))
	if _, err := squashEntriesOf(t, bad); !errors.Is(err, ErrSquashOrder) {
		t.Fatalf("unordered layer: %v, want ErrSquashOrder", err)
	}
	l0 := testutil.Tar(t, testutil.Dir("./"), testutil.File("a", "a"), testutil.Hardlink("b", "a"))
	l1 := testutil.Tar(t, testutil.Dir("./"), testutil.File("a", "changed"))
	if _, err := squashEntriesOf(t, l0, l1); !errors.Is(err, ErrSquashLink) {
		t.Fatalf("stale link: %v, want ErrSquashLink", err)
	}
}
