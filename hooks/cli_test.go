package hooks

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/statefile"
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

func TestFindRuntimeContainer(t *testing.T) {
	runc, crun := t.TempDir(), t.TempDir()
	pid := os.Getpid()
	start, err := statefile.ProcessStartTime(pid)
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

	rc, err := FindRuntimeContainer(roots, "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Runtime != "runc" || rc.State.Bundle != "/b/abc" || rc.State.Pid != pid ||
		rc.State.Status != specs.StateRunning || rc.CgroupPaths["freezer"] != "/sys/fs/cgroup/freezer/x" {
		t.Fatalf("runc container: %+v", rc)
	}
	// A unique prefix, and a reused pid (wrong start time): stopped.
	if rc, err = FindRuntimeContainer(roots, "abd"); err != nil || rc.State.ID != "abd999" || rc.State.Status != specs.StateStopped {
		t.Fatalf("prefix abd: %+v, %v", rc, err)
	}
	if rc, err = FindRuntimeContainer(roots, "crun"); err != nil || rc.Runtime != "crun" || rc.State.Bundle != "/b/crun1" ||
		rc.State.Status != specs.StateRunning {
		t.Fatalf("crun container: %+v, %v", rc, err)
	}
	if _, err := FindRuntimeContainer(roots, "ab"); err == nil || !strings.Contains(err.Error(), "matches 2") {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	for _, id := range []string{"nope", "", "..", "a/b", "../" + filepath.Base(runc)} {
		if _, err := FindRuntimeContainer(roots, id); !errors.Is(err, ErrNoContainer) {
			t.Errorf("%q: %v, want ErrNoContainer", id, err)
		}
	}
}

func TestExplain(t *testing.T) {
	args := []string{"ocisnap-hook", "--allow-dir", "/var/lib/ocisnap", "--log-level", "info"}
	snap := "/var/lib/ocisnap/s.tar"
	for _, tc := range []struct {
		name  string
		args  []string
		stage string
		ann   map[string]string
		want  []string // action[:problem?]
	}{
		{"nothing", args, "createRuntime", map[string]string{"foo": "bar"}, []string{"none"}},
		{"restore+export create", args, "createRuntime",
			map[string]string{KeyRestore: snap, KeyExport: snap}, []string{"restore", "record-export"}},
		{"export at poststop", args, "poststop", map[string]string{KeyExport: snap}, []string{"export"}},
		{"prestart acts as create", args, "prestart", map[string]string{KeyRestore: snap}, []string{"restore"}},
		{"restore only at poststop", args, "poststop", map[string]string{KeyRestore: snap}, []string{"none"}},
		{"refused source", args, "createRuntime", map[string]string{KeyRestore: "/etc/shadow"}, []string{"restore:problem"}},
		{"per-container key", args, "poststop",
			map[string]string{"io.kubernetes.cri.container-name": "app", KeyExport + ".app": snap, KeyExport: "/elsewhere"},
			[]string{"export"}},
		{"bad format", args, "poststop", map[string]string{KeyExport: snap, KeyExportFormat: "zip"}, []string{"error:problem"}},
		{"gvisor without compat", args, "createRuntime", map[string]string{KeyGVisorRestore: snap}, []string{"none"}},
		{"gvisor with compat", append(args, "--gvisor-compat"), "createRuntime", map[string]string{KeyGVisorRestore: snap}, []string{"restore"}},
		{"forced stage", append(args, "poststop"), "createRuntime", map[string]string{KeyExport: snap}, []string{"export"}},
		{"unknown flag", append(args, "--frobnicate"), "createRuntime", map[string]string{KeyExport: snap}, []string{"error:problem"}},
		{"poststart", args, "poststart", map[string]string{KeyExport: snap}, []string{"error:problem"}},
		{"view", args, "createRuntime", map[string]string{KeyView: "dir:/var/lib/ocisnap-views/v", KeyViewBinds: "k:/boot/k"}, []string{"view"}},
		{"view from the snapshot dir", args, "createRuntime",
			map[string]string{KeyView: "file:/var/lib/ocisnap/s.tar", KeyViewBinds: "k:/boot/k"}, []string{"view:problem"}},
		{"view from a named view dir", append(args, "--allow-view-dir", "/srv/views"), "createRuntime",
			map[string]string{KeyView: "file:/srv/views/boot.erofs", KeyViewBinds: "k:/boot/k"}, []string{"view"}},
		{"view not in the named view dir", append(args, "--allow-view-dir", "/srv/views"), "createRuntime",
			map[string]string{KeyView: "file:/var/lib/ocisnap-views/boot.erofs", KeyViewBinds: "k:/boot/k"}, []string{"view:problem"}},
		{"export into the view dir", args, "poststop", map[string]string{KeyExport: "/var/lib/ocisnap-views/boot.erofs"}, []string{"export:problem"}},
		{"overlapping dirs", append(args, "--allow-view-dir", "/var/lib/ocisnap/views"), "createRuntime",
			map[string]string{KeyExport: snap}, []string{"error:problem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := Explain(tc.args, tc.stage, tc.ann)
			var got []string
			for _, a := range acts {
				s := a.Action
				if a.Problem != "" {
					s += ":problem"
				}
				got = append(got, s)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v (%+v), want %v", got, acts, tc.want)
			}
			if tc.name == "per-container key" && !strings.Contains(acts[0].Detail, snap) {
				t.Fatalf("per-container key not used: %+v", acts[0])
			}
			if tc.name == "overlapping dirs" && !strings.Contains(acts[0].Problem, `"/var/lib/ocisnap/views"`) {
				t.Fatalf("overlap not explained: %+v", acts[0])
			}
		})
	}
}
