package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// exportScript writes under /tmp, /var/cache and /keep.
const exportScript = `mkdir -p /var/cache/app /keep && echo t > /tmp/t && echo c > /var/cache/app/c && echo k > /keep/k`

// TestExportExclude (docs/annotations.md, io.ocisnap.export-exclude): the
// container's excluded paths ("/tmp;/var/cache") and the administrator's
// --export-exclude are left out of the export with everything below them;
// without them the same container exports them.
func TestExportExclude(t *testing.T) {
	testutil.RequireRoot(t)
	dir := snapshotDir(t)

	p := newPodman(t, hooksDir)
	img := p.testImage()
	plain := filepath.Join(dir, "plain.tar")
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+plain, img, "sh", "-c", exportScript)
	names := readTarHeaders(t, plain)
	for _, want := range []string{"./tmp/t", "./var/cache/app/c", "./keep/k"} {
		if names[want] == nil {
			t.Errorf("without excludes, %s is missing from the export", want)
		}
	}

	ex := filepath.Join(dir, "ex.tar")
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+ex,
		"--annotation", "io.ocisnap.export-exclude=/tmp;/var/cache", img, "sh", "-c", exportScript)
	names = readTarHeaders(t, ex)
	for n := range names {
		if strings.HasPrefix(n, "./tmp/") || strings.HasPrefix(n, "./var/cache/") {
			t.Errorf("excluded %s is in the export", n)
		}
	}
	if names["./keep/k"] == nil {
		t.Errorf("./keep/k is missing from the export: %v", names)
	}

	// The administrator's default list, with the container's added.
	hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--export-exclude", "/var/cache")
	pa := newPodman(t, hd)
	img = pa.testImage()
	adm := filepath.Join(dir, "adm.tar")
	pa.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+adm,
		"--annotation", "io.ocisnap.export-exclude=/keep", img, "sh", "-c", exportScript)
	names = readTarHeaders(t, adm)
	if names["./tmp/t"] == nil {
		t.Errorf("./tmp/t is missing from the export: %v", names)
	}
	for n := range names {
		if strings.HasPrefix(n, "./var/cache/") || strings.HasPrefix(n, "./keep/") {
			t.Errorf("excluded %s is in the export", n)
		}
	}

	// A relative path is refused at start, naming the annotation.
	out, err := p.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+ex,
		"--annotation", "io.ocisnap.export-exclude=tmp", img, "true")
	if err == nil || !strings.Contains(out, "io.ocisnap.export-exclude=tmp") {
		t.Errorf("a relative exclude: %v, want a failed start naming the annotation\n%s", err, out)
	}
}

// TestMaxExportBytes (docs/policy.md): an export over --max-export-bytes
// fails, the previous snapshot stays, and `ocisnap status` lists the
// failure with its cause.
func TestMaxExportBytes(t *testing.T) {
	testutil.RequireRoot(t)
	stateDir, statusDir := t.TempDir(), t.TempDir()
	hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--state-dir", stateDir, "--status-dir", statusDir,
		"--max-export-bytes", "1048576")
	p := newPodman(t, hd)
	img := p.testImage()
	dest := filepath.Join(snapshotDir(t), "big.tar")
	must(t, os.WriteFile(dest, []byte("previous snapshot"), 0o600))

	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+dest, img, "sh", "-c",
		"dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null")
	if got, err := os.ReadFile(dest); err != nil || string(got) != "previous snapshot" {
		t.Errorf("the previous snapshot changed: %.40q, %v", got, err)
	}
	assertNoTemps(t, filepath.Dir(dest))
	var st struct {
		Failures []struct{ Kind, Dest, Cause string }
	}
	must(t, json.Unmarshal([]byte(mustCLI(t, "status", "--json", "--state-dir", stateDir, "--status-dir", statusDir)), &st))
	if len(st.Failures) != 1 || st.Failures[0].Kind != "export" || st.Failures[0].Dest != dest ||
		!strings.Contains(st.Failures[0].Cause, "limit exceeded") || !strings.Contains(st.Failures[0].Cause, `"/big"`) {
		t.Errorf("status failures %+v, want the export over the limit", st.Failures)
	}
	text := mustCLI(t, "status", "--state-dir", stateDir, "--status-dir", statusDir)
	if !strings.Contains(text, "max export bytes") {
		t.Errorf("ocisnap status does not show the limit:\n%s", text)
	}
	// Within the limit, the same export replaces the snapshot.
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+dest, img, "sh", "-c", "echo small > /small")
	if names := readTarHeaders(t, dest); names["./small"] == nil {
		t.Errorf("an export within the limit did not replace the snapshot: %v", names)
	}
}
