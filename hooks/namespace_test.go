package hooks

import (
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// TestExplainNamespace: {namespace} in --allow-dir is filled from the key
// --identity-from trusts; another tenant's directory, a forged engine key
// that disagrees and a container without a namespace get no access.
func TestExplainNamespace(t *testing.T) {
	args := []string{"ocisnap-hook", "--allow-dir", "/var/lib/ocisnap/tenants/{namespace}"}
	own, other := "/var/lib/ocisnap/tenants/team-a/s.tar", "/var/lib/ocisnap/tenants/team-b/s.tar"
	ctrd := map[string]string{ocistate.AnnotationContainerdNamespace: "team-a"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		args []string
		ann  map[string]string
		ok   bool
	}{
		{"own namespace", args, with(ctrd, KeyRestore, own), true},
		{"other namespace", args, with(ctrd, KeyRestore, other), false},
		{"literal template", args, with(ctrd, KeyRestore, "/var/lib/ocisnap/tenants/{namespace}/s.tar"), false},
		{"no namespace", args, map[string]string{KeyRestore: own}, false},
		{"forged cri-o key", args, with(ctrd, ocistate.AnnotationCRIONamespace, "team-b", KeyRestore, other), false},
		{"forged key, own dir", args, with(ctrd, ocistate.AnnotationCRIONamespace, "team-b", KeyRestore, own), false},
		{"nri stamp ignored by engine", args, map[string]string{ocistate.AnnotationNRINamespace: "team-a", KeyRestore: own}, false},
		{"nri stamp", append(args, "--identity-from", "nri"), map[string]string{ocistate.AnnotationNRINamespace: "team-a", KeyRestore: own}, true},
		{"nri ignores engine key", append(args, "--identity-from", "nri"), with(ctrd, KeyRestore, own), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := Explain(tc.args, StageCreateRuntime, tc.ann)
			if len(acts) != 1 || acts[0].Action != "restore" || (acts[0].Problem == "") != tc.ok {
				t.Fatalf("got %+v, want restore allowed=%v", acts, tc.ok)
			}
		})
	}
	acts := Explain(append(args, "--identity-from", "user"), StageCreateRuntime, with(ctrd, KeyRestore, own))
	if len(acts) != 1 || acts[0].Action != "error" || !strings.Contains(acts[0].Problem, "--identity-from") {
		t.Fatalf("bad --identity-from: %+v", acts)
	}
}
