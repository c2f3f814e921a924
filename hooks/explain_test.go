package hooks

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

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
		{"persist create", args, "createRuntime", map[string]string{KeyPersist: "oci:/var/lib/ocisnap/lay:app"}, []string{"restore", "record-export"}},
		{"persist at poststop", args, "poststop", map[string]string{KeyPersist: "oci:/var/lib/ocisnap/lay:app"}, []string{"export"}},
		{"persist outside", args, "createRuntime", map[string]string{KeyPersist: "/etc/p.tar"}, []string{"restore:problem", "record-export:problem"}},
		{"prestart acts as create", args, "prestart", map[string]string{KeyRestore: snap}, []string{"restore"}},
		{"restore only at poststop", args, "poststop", map[string]string{KeyRestore: snap}, []string{"none"}},
		{"refused source", args, "createRuntime", map[string]string{KeyRestore: "/etc/shadow"}, []string{"restore:problem"}},
		{"registry not allowed", args, "createRuntime", map[string]string{KeyRestore: "docker://reg.example.com/snaps/a:v1"}, []string{"restore:problem"}},
		{"registry allowed", append(args, "--allow-registry", "reg.example.com/snaps/"), "createRuntime",
			map[string]string{KeyRestore: "docker://reg.example.com/snaps/a:v1", KeyExport: "oci:/var/lib/ocisnap/lay:v2"}, []string{"restore", "record-export"}},
		{"layout outside", args, "createRuntime", map[string]string{KeyExport: "oci:/etc/lay"}, []string{"record-export:problem"}},
		{"per-container key", args, "poststop",
			map[string]string{"io.kubernetes.cri.container-name": "app", KeyExport + ".app": snap, KeyExport: "/elsewhere"},
			[]string{"export"}},
		{"bad format", args, "poststop", map[string]string{KeyExport: snap, KeyExportFormat: "zip"}, []string{"error:problem"}},
		{"gvisor without compat", args, "createRuntime", map[string]string{KeyGVisorRestore: snap}, []string{"none"}},
		{"gvisor with compat", append(args, "--gvisor-compat"), "createRuntime", map[string]string{KeyGVisorRestore: snap}, []string{"restore"}},
		{"forced stage", append(args, "poststop"), "createRuntime", map[string]string{KeyExport: snap}, []string{"export"}},
		{"unknown flag", append(args, "--frobnicate"), "createRuntime", map[string]string{KeyExport: snap}, []string{"error:problem"}},
		{"two stages", append(args, "poststop", "createRuntime"), "createRuntime", map[string]string{KeyExport: snap}, []string{"error:problem"}},
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
		{"another container's key", args, "createRuntime", map[string]string{KeyRestore + ".web": snap}, []string{"none"}},
		{"another container's key, named", args, "poststop",
			map[string]string{KeyExport + ".web": snap, "io.kubernetes.container.name": "db"}, []string{"none"}},
		{"list with ;", args, "createRuntime", map[string]string{KeyView: "image", KeyViewBinds: "a:/a;b:/b"}, []string{"view"}},
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
			for _, a := range acts {
				if a.Detail == "" {
					t.Errorf("%s: no detail: %+v", a.Action, a)
				}
			}
			if strings.HasPrefix(tc.name, "another container's key") &&
				(!strings.Contains(acts[0].Detail, `is for container "web"`) || !strings.Contains(acts[0].Detail, "the hook runs and does nothing")) {
				t.Errorf("another container's key not explained: %+v", acts[0])
			}
			if tc.name == "list with ;" && !strings.Contains(acts[0].Detail, "bind a -> /a, bind b -> /b") {
				t.Errorf("';' list: %+v", acts[0])
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

// TestExplainAcceptsEveryHookFlag: the dry run parses a hooks.d file's
// arguments with the hook's own flag set, so every flag the hook has is
// accepted (and a misspelt one refused, as the hook refuses it).
func TestExplainAcceptsEveryHookFlag(t *testing.T) {
	snap := "/var/lib/ocisnap/s.tar"
	ann := map[string]string{KeyExport: snap}
	n := 0
	NewCommandLine().Flags.VisitAll(func(f *pflag.Flag) {
		n++
		arg := "--" + f.Name
		if f.Value.Type() != "bool" {
			arg += "=" + f.DefValue
			if f.Value.Type() == "stringArray" {
				// A directory of its own per flag: allow and view
				// directories must not overlap.
				arg = "--" + f.Name + "=/srv/ocisnap-" + f.Name
				if f.Name == "allow-registry" {
					arg = "--allow-registry=reg.example.com/snaps/"
				}
			}
		}
		for _, a := range Explain([]string{"ocisnap-hook", arg}, "poststop", ann) {
			if a.Action == "error" {
				t.Errorf("%s: refused: %s", arg, a.Problem)
			}
		}
		typo := "--" + f.Name + "-typo"
		bad := Explain([]string{"ocisnap-hook", typo}, "poststop", ann)
		if len(bad) != 1 || bad[0].Action != "error" || !strings.Contains(bad[0].Problem, "unknown flag: "+typo) {
			t.Errorf("%s: %+v, want the unknown flag named", typo, bad)
		}
	})
	if n < 10 {
		t.Fatalf("the hook has %d flags, want the policy flags, --state-dir, --strict-export, the log flags and --version", n)
	}
}
