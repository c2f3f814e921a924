package runtimestate

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/procstat"
)

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	runc, crun := t.TempDir(), t.TempDir()
	pid := os.Getpid()
	start, err := procstat.StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(runc, "abc123/state.json"), `{"id":"abc123","init_process_pid":`+strconv.Itoa(pid)+
		`,"init_process_start":`+strconv.FormatUint(start, 10)+
		`,"config":{"labels":["io.container.manager=libpod","bundle=/b/abc"]},"cgroup_paths":{"freezer":"/sys/fs/cgroup/freezer/x"}}`)
	writeFile(t, filepath.Join(runc, "abd999/state.json"), `{"id":"abd999","init_process_pid":`+strconv.Itoa(pid)+
		`,"init_process_start":1,"config":{"labels":["bundle=/b/abd"]}}`)
	writeFile(t, filepath.Join(crun, "crun1/status"), `{"pid":`+strconv.Itoa(pid)+`,"process-start-time":`+
		strconv.FormatUint(start, 10)+`,"bundle":"/b/crun1","cgroup-path":"/machine.slice/x"}`)
	roots := []string{runc, crun}

	rc, err := Find(roots, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Runtime != "runc" || rc.State.Bundle != "/b/abc" || rc.State.Pid != pid ||
		rc.State.Status != specs.StateRunning || rc.CgroupPaths["freezer"] != "/sys/fs/cgroup/freezer/x" {
		t.Fatalf("runc container: %+v", rc)
	}
	// A unique prefix, and a reused pid (wrong start time): stopped.
	if rc, err = Find(roots, "abd"); err != nil || rc.State.ID != "abd999" || rc.State.Status != specs.StateStopped {
		t.Fatalf("prefix abd: %+v, %v", rc, err)
	}
	if rc, err = Find(roots, "crun"); err != nil || rc.Runtime != "crun" || rc.State.Bundle != "/b/crun1" ||
		rc.State.Status != specs.StateRunning {
		t.Fatalf("crun container: %+v, %v", rc, err)
	}
	if _, err := Find(roots, "ab"); err == nil || !strings.Contains(err.Error(), "matches 2") {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	for _, id := range []string{"nope", "", "..", "a/b", "../" + filepath.Base(runc)} {
		if _, err := Find(roots, id); !errors.Is(err, ErrNoContainer) {
			t.Errorf("%q: %v, want ErrNoContainer", id, err)
		}
	}
}

// TestRootsRootfulThenRootless: the one list both `ocisnap export` and
// `ocisnap gc` search holds runc's and crun's roots, rootful ones first.
func TestRootsRootfulThenRootless(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	want := []string{"/run/runc", "/run/crun", "/run/user/1000/runc", "/run/user/1000/crun"}
	if got := Roots(); !slices.Equal(got, want) {
		t.Fatalf("Roots() = %v, want %v", got, want)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got := Roots(); !slices.Equal(got, want[:2]) {
		t.Fatalf("without XDG_RUNTIME_DIR: Roots() = %v, want %v", got, want[:2])
	}
}
