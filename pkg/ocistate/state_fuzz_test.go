package ocistate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/containerid"
)

// FuzzReadState: the state on a hook's stdin is written by the runtime,
// but its id and annotations come from whoever created the container.
// ReadState never panics, and a state it accepts has an id that is safe as
// a file name, a clean absolute bundle and a pid that is not negative.
func FuzzReadState(f *testing.F) {
	for _, name := range []string{"podman-runc-createruntime.json", "runc-createruntime.json", "runc-poststop.json",
		"crun-createruntime.json", "crun-poststop.json", "podman-poststop.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		testutil.AddSeed(f, strings.TrimSuffix(name, ".json"), b)
	}
	for i, s := range []string{
		`{"id":"../../etc","bundle":"/b","pid":1}`,
		`{"id":"a/b","bundle":"/b"}`,
		`{"id":".hidden","bundle":"/b"}`,
		`{"id":"a","bundle":"relative"}`,
		`{"id":"a","bundle":"/b/../../etc/."}`,
		`{"id":"a","bundle":"/b","pid":-1}`,
		`{"id":"a","bundle":"/b","pid":99999999999999999999}`,
		`{"id":"a\u0000b","bundle":"/b"}`,
		`{"id":"a","bundle":"/b","annotations":{"io.ocisnap.restore":"/etc/shadow"}}`,
		`{"id":"a","bundle":"/b"}{"id":"b","bundle":"/c"}`,
		`{"id":"a","bundle":"/b"`,
	} {
		testutil.AddSeed(f, fmt.Sprintf("hostile-%02d", i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadState(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		if err := containerid.Validate(s.ID); err != nil || strings.ContainsAny(s.ID, "/\x00") || strings.HasPrefix(s.ID, ".") {
			t.Fatalf("accepted id %q (%v)", s.ID, err)
		}
		if !filepath.IsAbs(s.Bundle) || filepath.Clean(s.Bundle) != s.Bundle {
			t.Fatalf("accepted bundle %q", s.Bundle)
		}
		if s.Pid < 0 {
			t.Fatalf("accepted pid %d", s.Pid)
		}
	})
}

// FuzzLoad: config.json is the runtime's, its annotations the container
// creator's. Load never panics; the rootfs it returns is a clean absolute
// path, and a per-container annotation key is only used for the
// container's own name.
func FuzzLoad(f *testing.F) {
	testutil.AddSeed(f, "per-container", `{"root":{"path":"rootfs"},"annotations":{"io.kubernetes.container.name":"app","io.ocisnap.export.app":"/a","io.ocisnap.export":"/b"}}`, "creating")
	testutil.AddSeed(f, "mounts", `{"root":{"path":"/abs/../rootfs/"},"mounts":[{"destination":"etc/hosts"},{"destination":""},{"destination":"/../../x"}]}`, "stopped")
	testutil.AddSeed(f, "root-dotdot", `{"root":{"path":"../../.."},"linux":{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}}`, "created")
	testutil.AddSeed(f, "dotted-name", `{"annotations":{"io.kubernetes.cri.container-name":"a.b","io.ocisnap.export.a.b":"/x"}}`, "creating")
	testutil.AddSeed(f, "not-json", `not json`, "creating")
	f.Fuzz(func(t *testing.T, config, status string) {
		bundle := t.TempDir()
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := ReadState(strings.NewReader(`{"id":"c1","bundle":"` + bundle + `","status":"creating","pid":1}`))
		if err != nil {
			t.Fatal(err)
		}
		st.Status = statusOf(status)
		c, err := Load(st)
		if err != nil {
			return
		}
		if c.Rootfs != "" && (!filepath.IsAbs(c.Rootfs) || filepath.Clean(c.Rootfs) != c.Rootfs) {
			t.Fatalf("rootfs %q is not a clean absolute path", c.Rootfs)
		}
		for _, d := range c.MountDestinations() {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d {
				t.Fatalf("mount destination %q is not a clean absolute path", d)
			}
		}
		for k, v := range c.Annotations() {
			got, found := c.Annotation(k)
			if !found {
				t.Fatalf("Annotation(%q) not found although set", k)
			}
			if perName, ok := c.Annotations()[k+"."+c.Name]; c.Name != "" && ok {
				if got != perName {
					t.Fatalf("Annotation(%q) = %q, want the per-container %q", k, got, perName)
				}
			} else if got != v {
				t.Fatalf("Annotation(%q) = %q, want %q", k, got, v)
			}
		}
	})
}

func statusOf(s string) specs.ContainerState {
	switch st := specs.ContainerState(s); st {
	case specs.StateStopped, specs.StateCreated, specs.StateRunning:
		return st
	}
	return specs.StateCreating
}
