package failurelog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
)

// TestAddList: records come back newest first, whole, with the log's
// directory root-only (0700) and each record 0600.
func TestAddList(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "status")}
	if recs, errs := d.List(); len(recs) != 0 || len(errs) != 0 {
		t.Fatalf("missing log: %v %v", recs, errs)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range 3 {
		r := Record{Time: t0.Add(time.Duration(i) * time.Second), Kind: KindExport, Container: fmt.Sprint("c", i),
			Annotation: "io.ocisnap.export", Dest: "/var/lib/ocisnap/x.tar", Cause: "rename: operation not permitted"}
		if err := d.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	recs, errs := d.List()
	if len(errs) != 0 || len(recs) != 3 {
		t.Fatalf("List: %d records, errors %v", len(recs), errs)
	}
	for i, r := range recs {
		if want := fmt.Sprint("c", 2-i); r.Container != want || !r.Time.Equal(t0.Add(time.Duration(2-i)*time.Second)) {
			t.Errorf("record %d: %+v, want container %s", i, r, want)
		}
		if r.Dest != "/var/lib/ocisnap/x.tar" || r.Cause != "rename: operation not permitted" || r.Kind != KindExport {
			t.Errorf("record %d: %+v", i, r)
		}
		fi, err := os.Stat(filepath.Join(d.Path, r.File))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("record file %s: %v %v", r.File, fi.Mode(), err)
		}
	}
	fi, err := os.Stat(d.Path)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("log directory: %v %v", fi.Mode(), err)
	}
}

// TestBounded: past Max the oldest records go; a cause is cut to maxCause
// bytes on a rune boundary.
func TestBounded(t *testing.T) {
	d := Dir{Path: t.TempDir(), Max: 5}
	for i := range 12 {
		if err := d.Add(Record{Kind: KindExport, Container: fmt.Sprint("c", i), Cause: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	recs, errs := d.List()
	if len(errs) != 0 || len(recs) != 5 {
		t.Fatalf("List: %d records, errors %v", len(recs), errs)
	}
	for i, r := range recs {
		if want := fmt.Sprint("c", 11-i); r.Container != want {
			t.Errorf("record %d is %s, want %s (the newest kept)", i, r.Container, want)
		}
	}
	if n := files(t, d.Path); n != 5 {
		t.Errorf("%d files in the log, want 5", n)
	}

	long := strings.Repeat("é", maxCause) // 2 bytes each
	if err := d.Add(Record{Kind: KindExport, Container: "long", Cause: long}); err != nil {
		t.Fatal(err)
	}
	recs, _ = d.List()
	c := recs[0].Cause
	if len(c) > maxCause || !strings.HasSuffix(c, " [...]") || !strings.HasPrefix(c, "éé") || strings.ContainsRune(c, '\uFFFD') {
		t.Errorf("long cause kept as %d bytes: %q...", len(c), c[:20])
	}
}

// TestConcurrentWriters: writers in parallel (each its own Add, as
// concurrent hooks are) lose no record while under the bound, leave exactly
// Max when over it, and readers meanwhile see only whole records.
func TestConcurrentWriters(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
	}{{"under the bound", 1000}, {"over the bound", 7}} {
		t.Run(tc.name, func(t *testing.T) {
			d := Dir{Path: t.TempDir(), Max: tc.max}
			const writers, each = 8, 10
			var wg sync.WaitGroup
			stop := make(chan struct{})
			readErrs := make(chan error, 100)
			go func() {
				for {
					select {
					case <-stop:
						close(readErrs)
						return
					default:
					}
					if _, errs := d.List(); len(errs) > 0 {
						readErrs <- errs[0]
					}
				}
			}()
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						if err := d.Add(Record{Kind: KindExport, Container: fmt.Sprintf("w%d-%d", w, i), Cause: "c"}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			for err := range readErrs {
				t.Errorf("a reader saw a partial record: %v", err)
			}
			recs, errs := d.List()
			want := min(tc.max, writers*each)
			if len(errs) != 0 || len(recs) != want {
				t.Fatalf("List: %d records, want %d; errors %v", len(recs), want, errs)
			}
			seen := map[string]bool{}
			for _, r := range recs {
				if seen[r.Container] {
					t.Errorf("record %s twice", r.Container)
				}
				seen[r.Container] = true
			}
			if n := files(t, d.Path); n != want {
				t.Errorf("%d files left (temporaries?), want %d", n, want)
			}
		})
	}
}

// TestStaleTemporary: a dead writer's temporary file (unlocked) goes at the
// next Add, and is never listed; other files are left alone.
func TestStaleTemporary(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	stale := filepath.Join(d.Path, "."+recordName(time.Now())+atomicfile.TempInfix+"0123456789abcdef")
	if err := os.WriteFile(stale, []byte(`{"kind":`), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(d.Path, "README")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if recs, errs := d.List(); len(recs) != 0 || len(errs) != 0 {
		t.Fatalf("List: %v %v", recs, errs)
	}
	if err := d.Add(Record{Kind: KindExport, Container: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("a file that is no record was removed: %v", err)
	}
}

func files(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
