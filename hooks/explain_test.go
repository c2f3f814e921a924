package hooks

import (
	"strings"
	"testing"
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
		{"view", args, "createRuntime", map[string]string{KeyView: "dir:/var/lib/ocisnap/v", KeyViewBinds: "k:/boot/k"}, []string{"view"}},
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
		})
	}
}
