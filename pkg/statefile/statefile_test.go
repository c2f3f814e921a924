package statefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/containerid"
)

func fullRecord(id string) *Record {
	return &Record{
		ID: id, Pid: 4242, PidStart: 123456789,
		Bundle: "/run/containers/" + id, Rootfs: "/var/lib/containers/" + id + "/merged",
		Created: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC),
		Overlay: &Overlay{
			Upper: "/u", Work: "/w", Lowers: []string{"/l1", "/l2"}, DataDirs: []string{"/d"},
			Options: []string{"metacopy=on", "redirect_dir=on"}, UserXattr: true,
		},
		MountDestinations: []string{"/proc", "/etc/hosts"},
		UIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 1}},
		Export:            &Export{Dest: "/var/lib/ocisnap/a.tar", Format: "oci", Compression: "zstd"},
		Views: []View{{
			Kind: "file", Source: "/var/lib/ocisnap/boot.erofs", Mountpoint: "/run/ocisnap/views/" + id,
			LoopDevice: "/dev/loop7", Mounted: true,
			Binds: []Bind{
				{Src: "/vmlinuz", Dst: "/boot/vmlinuz", Stub: "/r/boot/vmlinuz", Mounted: true}, // an older hook's record
				{Src: "/initrd", Dst: "/a/b/initrd", Mounted: true, Stubs: []Stub{
					{Path: "/a", Dir: true}, {Path: "/a/b", Dir: true}, {Path: "/a/b/initrd"}}},
			},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "state")}
	for _, rec := range []*Record{fullRecord("abc"), {ID: "minimal"}} {
		if err := d.Write(rec); err != nil {
			t.Fatal(err)
		}
		got, err := d.Read(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, rec)
		}
	}
	fi, err := os.Stat(d.Path)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	fi, err = os.Stat(d.File("abc"))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("record mode %v, %v; want no group/other bits", fi.Mode(), err)
	}
	// Overwrite, then list and remove.
	rec := fullRecord("abc")
	rec.Pid = 7
	if err := d.Write(rec); err != nil {
		t.Fatal(err)
	}
	recs, errs := d.List()
	if len(errs) != 0 || len(recs) != 2 || recs[0].ID != "abc" || recs[0].Pid != 7 || recs[1].ID != "minimal" {
		t.Fatalf("List() = %v, %v", recs, errs)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := d.Remove("abc"); err != nil {
			t.Fatalf("Remove #%d: %v", i, err)
		}
	}
	if _, err := d.Read("abc"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read after Remove = %v, want fs.ErrNotExist", err)
	}
	assertNoTemps(t, d.Path)
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestMissingDir(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "nope")}
	if recs, errs := d.List(); recs != nil || errs != nil {
		t.Errorf("List of a missing dir = %v, %v", recs, errs)
	}
	if _, err := d.Read("x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read = %v", err)
	}
	if err := d.Remove("x"); err != nil {
		t.Errorf("Remove = %v", err)
	}
	if (Dir{}).File("x") != filepath.Join(DefaultDir, "x.json") {
		t.Errorf("zero Dir is not DefaultDir")
	}
}

// TestAtomicWrite has readers race writers of records of different sizes:
// a reader sees one whole record or the other, never a mix.
func TestAtomicWrite(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	small, big := &Record{ID: "c"}, fullRecord("c")
	big.MountDestinations = make([]string, 5000)
	for i := range big.MountDestinations {
		big.MountDestinations[i] = fmt.Sprintf("/mnt/%d", i)
	}
	if err := d.Write(small); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				rec := small
				if (i+w)%2 == 0 {
					rec = big
				}
				if err := d.Write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for r := 0; r < 4; r++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := d.Read("c")
				if err != nil {
					t.Error(err)
					return
				}
				if n := len(got.MountDestinations); n != 0 && n != 5000 {
					t.Errorf("torn record: %d mount destinations", n)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	assertNoTemps(t, d.Path)
}

func TestCorrupt(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	if err := d.Write(&Record{ID: "good"}); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"truncated.json": `{"id": "truncated", "pid": 1`,
		"garbage.json":   "\x00\x01not json",
		"empty.json":     "",
		"other.json":     `{"id": "someone-else"}`,
		"-bad-id.json":   `{"id": "-bad-id"}`,
		// Skipped: temporary, hidden, not .json, directory.
		".tmp-123":     `{`,
		".hidden.json": `{`,
		"notes.txt":    `{`,
	}
	for name, c := range files {
		if err := os.WriteFile(filepath.Join(d.Path, name), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(d.Path, "dir.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"truncated", "garbage", "empty", "other"} {
		_, err := d.Read(id)
		if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), d.File(id)) {
			t.Errorf("Read(%q) = %v; want an error naming %s", id, err, d.File(id))
		}
	}
	recs, errs := d.List()
	if len(recs) != 1 || recs[0].ID != "good" {
		t.Errorf("List records = %v", recs)
	}
	if len(errs) != 5 {
		t.Errorf("List errors = %d, want 5: %v", len(errs), errs)
	}
}

func TestHostileIDs(t *testing.T) {
	base := t.TempDir()
	d := Dir{Path: filepath.Join(base, "state")}
	bad := []string{
		"", ".", "..", "../x", "../../etc/passwd", "a/b", "/abs", "-flag", ".hidden", "_x",
		"a\x00b", "a b", "a\nb", "a:b", "a*", "é", strings.Repeat("a", containerid.MaxLen+1),
	}
	for _, id := range bad {
		t.Run(fmt.Sprintf("%.20q", id), func(t *testing.T) {
			if err := d.Write(&Record{ID: id}); !errors.Is(err, containerid.ErrInvalid) {
				t.Errorf("Write = %v, want containerid.ErrInvalid", err)
			}
			if _, err := d.Read(id); !errors.Is(err, containerid.ErrInvalid) {
				t.Errorf("Read = %v, want containerid.ErrInvalid", err)
			}
			if err := d.Remove(id); !errors.Is(err, containerid.ErrInvalid) {
				t.Errorf("Remove = %v, want containerid.ErrInvalid", err)
			}
			if p := d.File(id); p != "" {
				t.Errorf("File = %q, want \"\"", p)
			}
		})
	}
	ents, _ := os.ReadDir(base)
	if len(ents) != 0 {
		t.Errorf("hostile ids created %v", ents)
	}
	good := []string{"a", "0", "abc.def", "a+b-c_d.e", strings.Repeat("f", 64), strings.Repeat("a", containerid.MaxLen), "x.."}
	for _, id := range good {
		if err := d.Write(&Record{ID: id}); err != nil {
			t.Errorf("Write(%q): %v", id, err)
		}
	}
	if err := d.Write(nil); err == nil {
		t.Error("Write(nil) succeeded")
	}
}

// TestRemoveTakesUpperRecord: the upper record (UpperFile) goes with the
// container's record, and List does not take it for one.
func TestRemoveTakesUpperRecord(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	rec := fullRecord("c1")
	if err := d.Write(rec); err != nil {
		t.Fatal(err)
	}
	up := d.UpperFile(rec.ID)
	if err := os.WriteFile(up, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if recs, errs := d.List(); len(recs) != 1 || len(errs) != 0 {
		t.Fatalf("List: %d records, errors %v", len(recs), errs)
	}
	if err := d.Remove(rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(up); !os.IsNotExist(err) {
		t.Fatalf("upper record left after Remove: %v", err)
	}
	if d.UpperFile("../x") != "" {
		t.Fatal("UpperFile of an invalid id")
	}
}
