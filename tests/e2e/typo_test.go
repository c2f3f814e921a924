package e2e

import (
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestTypoFailsStart (docs/annotations.md, "Keys"): with the shipped
// hooks.d file as installed, an io.ocisnap.* key the hook does not know
// reaches it and fails the container's start, the error naming the key and
// the closest known one; so does a view key without the view. The
// container's command never runs. A per-container key for another
// container is no typo: that container starts.
func TestTypoFailsStart(t *testing.T) {
	testutil.RequireRoot(t)
	p := newPodman(t, hooksDir)
	img := p.testImage()
	for _, c := range []struct {
		name string
		ann  []string
		want []string
	}{
		{"restor", []string{"io.ocisnap.restor=/var/lib/ocisnap/app.tar"},
			[]string{"io.ocisnap.restor=/var/lib/ocisnap/app.tar", "unknown annotation", "did you mean io.ocisnap.restore?"}},
		{"export-fromat", []string{"io.ocisnap.export=/var/lib/ocisnap/app.tar", "io.ocisnap.export-fromat=oci"},
			[]string{"io.ocisnap.export-fromat=oci", "did you mean io.ocisnap.export-format?"}},
		{"binds-without-view", []string{"io.ocisnap.view-binds=boot/vmlinuz:/run/k"},
			[]string{"io.ocisnap.view-binds=boot/vmlinuz:/run/k", "given without io.ocisnap.view"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"run", "--rm", "--network=none"}
			for _, a := range c.ann {
				args = append(args, "--annotation", a)
			}
			out, err := p.runErr(append(args, img, "echo", "the command ran")...)
			if err == nil {
				t.Fatalf("the container started despite %v:\n%s", c.ann, out)
			}
			t.Logf("podman: %s", out)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("podman's error does not say %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "the command ran") {
				t.Errorf("the container's command ran:\n%s", out)
			}
		})
	}
	t.Run("other-container's-key", func(t *testing.T) {
		out := p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore.other=/var/lib/ocisnap/none.tar",
			img, "echo", "the command ran")
		if out != "the command ran" {
			t.Errorf("output %q", out)
		}
	})
}
