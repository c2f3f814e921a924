package statefile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/containerid"
)

// FuzzRead: whatever a state file holds (it outlives the hook that wrote
// it: a crash, a full disk or another writer may leave anything), Read
// either fails naming the file or returns the record of that container,
// which writes and reads back unchanged; it never panics. List agrees.
func FuzzRead(f *testing.F) {
	full, err := json.Marshal(fullRecord("c1"))
	if err != nil {
		f.Fatal(err)
	}
	seeds := []struct {
		name string
		data []byte
	}{
		{"full", full},
		{"torn-write", full[:len(full)/2]},
		{"other-container", []byte(`{"id":"other"}`)},
		{"negative-pid", []byte(`{"id":"c1","pid":-1}`)},
		{"hostile-paths", []byte(`{"id":"c1","overlay":{"upper":"../../etc"},"views":[{"binds":[{"dst":"/"}]}]}`)},
		{"bad-time", []byte(`{"id":"c1","created":"not a time"}`)},
		{"huge-mapping", []byte(`{"id":"c1","uidMappings":[{"containerID":0,"hostID":4294967295,"size":4294967295}]}`)},
		{"binary", []byte("\x00\xff")},
		{"array", []byte(`[]`)},
		{"null", []byte(`null`)},
		{"trailing", []byte(`{"id":"c1"} trailing`)},
		{"duplicate-id", []byte(`{"id":"c1","id":"c2"}`)},
		{"deep-nesting", []byte(strings.Repeat(`{"a":`, 10000))},
	}
	for _, s := range seeds {
		testutil.AddSeed(f, s.name, s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := Dir{Path: t.TempDir()}
		if err := os.WriteFile(filepath.Join(d.Path, "c1.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := d.Read("c1")
		if err != nil {
			if !strings.Contains(err.Error(), "c1") {
				t.Fatalf("error does not name the container or its file: %v", err)
			}
			if recs, errs := d.List(); len(recs) != 0 || len(errs) != 1 {
				t.Fatalf("List = %d records, %v; want the one error", len(recs), errs)
			}
			return
		}
		if rec.ID != "c1" {
			t.Fatalf("Read(c1) returned the record of %q", rec.ID)
		}
		first, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("a record Read returned does not encode: %v", err)
		}
		if err := d.Write(rec); err != nil {
			t.Fatalf("Write of a record Read returned: %v", err)
		}
		again, err := d.Read("c1")
		if err != nil {
			t.Fatalf("Read after Write: %v", err)
		}
		second, _ := json.Marshal(again)
		if !bytes.Equal(first, second) {
			t.Fatalf("record changed through Write/Read:\n%s\n%s", first, second)
		}
		if recs, errs := d.List(); len(recs) != 1 || len(errs) != 0 {
			t.Fatalf("List = %d records, %v; want one", len(recs), errs)
		}
	})
}

// FuzzValidateID: an id that validates names a file directly inside the
// state directory, not hidden (temporary files are), within NAME_MAX.
func FuzzValidateID(f *testing.F) {
	for i, s := range []string{"c1", "", ".", "..", "../x", "a/b", ".tmp-1", "-x", "a\x00b", "a b",
		strings.Repeat("a", 250), strings.Repeat("a", 251), "é", "a..b", "A.b_c+d-e"} {
		testutil.AddSeed(f, fmt.Sprint(i), s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		const dir = "/run/ocisnap-fuzz"
		d := Dir{Path: dir}
		file := d.File(id)
		if containerid.Validate(id) != nil {
			if file != "" {
				t.Fatalf("File(%q) = %q for an invalid id", id, file)
			}
			return
		}
		if filepath.Dir(file) != dir || filepath.Base(file) != id+".json" {
			t.Fatalf("File(%q) = %q: not %s/<id>.json", id, file, dir)
		}
		if strings.HasPrefix(id, ".") || strings.ContainsAny(id, "/\x00") || len(id)+len(".json") > 255 {
			t.Fatalf("containerid.Validate accepted %q", id)
		}
	})
}
