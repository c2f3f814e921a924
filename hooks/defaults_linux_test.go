package hooks

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	mobyuser "github.com/moby/sys/user"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
	"github.com/ocisnap/ocisnap/internal/testutil"
)

func TestToParentUID(t *testing.T) {
	for _, tc := range []struct {
		name    string
		uidMap  string
		uid     int
		want    int
		notRoot bool
	}{
		{"initial namespace, root", "         0          0 4294967295\n", 0, 0, false},
		{"initial namespace, user", "         0          0 4294967295\n", 1000, 1000, true},
		{"rootless podman, its root", "0 1000 1\n1 100000 65536\n", 0, 1000, true},
		{"rootless podman, a subuid", "0 1000 1\n1 100000 65536\n", 5, 100004, true},
		{"uid no entry covers", "0 1000 1\n", 7, 7, true},
		{"namespace root mapped to host root", "0 0 1\n", 0, 0, false},
		{"no uid_map", "", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maps, err := mobyuser.ParseIDMap(strings.NewReader(tc.uidMap))
			if err != nil {
				t.Fatal(err)
			}
			got, notRoot := hookcli.ToParentUID(tc.uid, maps)
			if got != tc.want || notRoot != tc.notRoot {
				t.Fatalf("toParentUID(%d) = %d, %t; want %d, %t", tc.uid, got, notRoot, tc.want, tc.notRoot)
			}
		})
	}
}

// TestHostUIDInUserNamespace runs this test binary as uid 0 of a new user
// namespace whose uid 0 is host uid 1000, as rootless Podman runs the
// hook: hostUID must see through it.
func TestHostUIDInUserNamespace(t *testing.T) {
	if os.Getenv("OCISNAP_TEST_HOSTUID") == "1" {
		uid, notRoot := hostUID()
		fmt.Printf("hostUID=%d,%t euid=%d\n", uid, notRoot, os.Geteuid())
		return
	}
	testutil.RequireRoot(t)
	if uid, notRoot := hostUID(); uid != 0 || notRoot {
		t.Fatalf("as host root: hostUID() = %d, %t; want 0, false", uid, notRoot)
	}
	// Host uid 1000 must be able to run the test binary: a copy in a
	// directory others can enter.
	dir, err := os.MkdirTemp("", "ocisnap-hostuid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hooks.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHostUIDInUserNamespace$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OCISNAP_TEST_HOSTUID=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1000, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1000, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a user namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "hostUID=1000,true euid=0\n") {
		t.Fatalf("in a user namespace mapping 0 to 1000:\n%s\nwant hostUID=1000,true euid=0", out)
	}
}
