package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestUserNamespace: a container with a user namespace (podman --uidmap)
// exports container-side ids, not the host ids its upper holds; a restore
// into a container with another mapping lands each file on that
// container's host ids.
func TestUserNamespace(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "hook.log")
	p := newPodman(t, writeHooksDir(t, t.TempDir(), hookBin, 0, "--log-file", logFile, "--log-level", "debug"))
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(logFile)
			t.Logf("hook log:\n%s", log)
		}
	})
	img := p.testImage()
	snap := filepath.Join(snapshotDir(t), "userns.tar")

	id := p.run("run", "-d", "--network=none", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536",
		"--annotation", "io.ocisnap.export="+snap, img, "sleep", "1000")
	checkBundleMappings(t, p, id, 100000)
	p.run("exec", id, "sh", "-c", "echo r > /rootfile && echo o > /owned && chown 1234:4321 /owned && mkdir /d && chown 7:8 /d")
	upper := p.upperDir(id)
	for name, want := range map[string][2]uint32{"rootfile": {100000, 100000}, "owned": {101234, 104321}, "d": {100007, 100008}} {
		if got := hostIDs(t, filepath.Join(upper, name)); got != want {
			t.Fatalf("upper %s is owned by %v on the host, want %v: podman did not use the mapping", name, got, want)
		}
	}
	p.run("stop", "-t", "0", id) // poststop: the export
	p.run("rm", id)

	hs := readTarHeaders(t, snap)
	for name, want := range map[string][2]int{"./rootfile": {0, 0}, "./owned": {1234, 4321}, "./d/": {7, 8}} {
		h := hs[name]
		if h == nil {
			t.Fatalf("%s not exported", name)
		}
		if got := [2]int{h.Uid, h.Gid}; got != want {
			t.Errorf("%s exported as %d:%d, want the container-side %d:%d", name, h.Uid, h.Gid, want[0], want[1])
		}
	}

	id2 := p.run("run", "-d", "--network=none", "--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536",
		"--annotation", "io.ocisnap.restore="+snap, img, "sleep", "1000")
	checkBundleMappings(t, p, id2, 200000)
	upper2 := p.upperDir(id2)
	for name, want := range map[string][2]uint32{"rootfile": {200000, 200000}, "owned": {201234, 204321}, "d": {200007, 200008}} {
		if got := hostIDs(t, filepath.Join(upper2, name)); got != want {
			t.Errorf("restored %s is owned by %v on the host, want %v", name, got, want)
		}
	}
	if out := p.run("exec", id2, "stat", "-c", "%u:%g", "/rootfile", "/owned", "/d"); out != "0:0\n1234:4321\n7:8" {
		t.Errorf("inside the restored container: %q", out)
	}
	p.run("rm", "-f", "-t", "0", id2)
}

// checkBundleMappings checks that podman gave the runtime (and so the
// hook) the user namespace mappings in config.json.
func checkBundleMappings(t testing.TB, p *podman, id string, host uint32) {
	t.Helper()
	bundle := p.run("inspect", "--format", "{{.StaticDir}}", id)
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	must(t, err)
	var spec specs.Spec
	must(t, json.Unmarshal(data, &spec))
	want := specs.LinuxIDMapping{ContainerID: 0, HostID: host, Size: 65536}
	if spec.Linux == nil || len(spec.Linux.UIDMappings) != 1 || spec.Linux.UIDMappings[0] != want ||
		len(spec.Linux.GIDMappings) != 1 || spec.Linux.GIDMappings[0] != want {
		t.Fatalf("config.json of %s has no linux.uidMappings/gidMappings %+v: %+v", id, want, spec.Linux)
	}
}

func hostIDs(t testing.TB, p string) [2]uint32 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return [2]uint32{st.Uid, st.Gid}
}
