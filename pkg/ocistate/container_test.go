package ocistate

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func writeBundle(t *testing.T, spec *specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	if spec != nil {
		data, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadRootfs(t *testing.T) {
	tests := []struct {
		name, root string
		want       func(bundle string) string
	}{
		{"relative", "rootfs", func(b string) string { return filepath.Join(b, "rootfs") }},
		{"relative dotted", "./x/../rootfs/", func(b string) string { return filepath.Join(b, "rootfs") }},
		{"absolute", "/var/lib/containers/storage/overlay/abc/merged", func(string) string { return "/var/lib/containers/storage/overlay/abc/merged" }},
		{"none", "", func(string) string { return "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &specs.Spec{Version: specs.Version}
			if tt.root != "" {
				spec.Root = &specs.Root{Path: tt.root}
			}
			bundle := writeBundle(t, spec)
			c, err := Load(&specs.State{ID: "a", Bundle: bundle, Status: specs.StateCreating})
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.want(bundle); c.Rootfs != want {
				t.Errorf("rootfs %q, want %q", c.Rootfs, want)
			}
		})
	}
}

func TestLoadMissingConfig(t *testing.T) {
	bundle := writeBundle(t, nil)
	ann := map[string]string{AnnotationCRIOName: "db"}

	c, err := Load(&specs.State{ID: "a", Bundle: bundle, Status: specs.StateStopped, Annotations: ann})
	if err != nil {
		t.Fatalf("poststop: %v", err)
	}
	if c.Spec != nil || c.Rootfs != "" || c.Name != "db" {
		t.Errorf("poststop: got spec=%v rootfs=%q name=%q", c.Spec, c.Rootfs, c.Name)
	}
	if c.MountDestinations() != nil || c.UIDMappings() != nil || c.GIDMappings() != nil {
		t.Error("nil spec accessors must return nil")
	}

	_, err = Load(&specs.State{ID: "a", Bundle: bundle, Status: specs.StateCreating})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("createRuntime: got %v, want ErrNotExist", err)
	}
}

func TestLoadBadConfig(t *testing.T) {
	bundle := writeBundle(t, nil)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(&specs.State{ID: "a", Bundle: bundle, Status: specs.StateStopped}); err == nil {
		t.Error("truncated config.json accepted")
	}
	// A directory where config.json should be is not ENOENT: fatal even at poststop.
	bundle = writeBundle(t, nil)
	if err := os.Mkdir(filepath.Join(bundle, "config.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(&specs.State{ID: "a", Bundle: bundle, Status: specs.StateStopped}); err == nil {
		t.Error("config.json directory accepted")
	}
}

func TestAnnotations(t *testing.T) {
	specAnn := map[string]string{"io.ocisnap.restore": "/spec.tar", AnnotationContainerdName: "web"}
	bundle := writeBundle(t, &specs.Spec{Annotations: specAnn})

	// State without annotations: the spec's are used, name included.
	c, err := Load(&specs.State{ID: "a", Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "web" {
		t.Errorf("name %q", c.Name)
	}
	if v, _ := c.Annotation("io.ocisnap.restore"); v != "/spec.tar" {
		t.Errorf("spec fallback: %q", v)
	}

	// State annotations win as a whole.
	c, err = Load(&specs.State{ID: "a", Bundle: bundle, Annotations: map[string]string{"x": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Annotation("io.ocisnap.restore"); ok || c.Name != "" {
		t.Errorf("spec annotations leaked: name=%q", c.Name)
	}
}

func TestAnnotationPerContainer(t *testing.T) {
	ann := map[string]string{
		"io.ocisnap.export":       "/all.tar",
		"io.ocisnap.export.web":   "/web.tar",
		"io.ocisnap.restore.side": "/side.tar",
		AnnotationContainerdName:  "web",
		AnnotationCRIOName:        "ignored-when-containerd-set",
	}
	tests := []struct {
		name, key, want string
		ok              bool
		found           string // the key AnnotationKey names
	}{
		{"web", "io.ocisnap.export", "/web.tar", true, "io.ocisnap.export.web"},
		{"side", "io.ocisnap.export", "/all.tar", true, "io.ocisnap.export"},
		{"side", "io.ocisnap.restore", "/side.tar", true, "io.ocisnap.restore.side"},
		{"web", "io.ocisnap.restore", "", false, "io.ocisnap.restore"},
		{"", "io.ocisnap.export", "/all.tar", true, "io.ocisnap.export"},
		{"", "io.ocisnap.restore", "", false, "io.ocisnap.restore"},
		// A key that only exists with a per-container suffix is not found by its prefix.
		{"web", "io.ocisnap", "", false, "io.ocisnap"},
	}
	for _, tt := range tests {
		c := &Container{State: &specs.State{Annotations: ann}, Name: tt.name}
		v, ok := c.Annotation(tt.key)
		if v != tt.want || ok != tt.ok {
			t.Errorf("name %q key %q: got %q,%v want %q,%v", tt.name, tt.key, v, ok, tt.want, tt.ok)
		}
		found, v, ok := c.AnnotationKey(tt.key)
		if found != tt.found || v != tt.want || ok != tt.ok {
			t.Errorf("AnnotationKey: name %q key %q: got %q,%q,%v want %q,%q,%v", tt.name, tt.key, found, v, ok, tt.found, tt.want, tt.ok)
		}
	}
	if n := containerName(ann); n != "web" {
		t.Errorf("containerd name should win, got %q", n)
	}
}

func TestHasAny(t *testing.T) {
	ann := map[string]string{"io.ocisnap.export-format": "oci", "other": "x"}
	tests := []struct {
		ann      map[string]string
		prefixes []string
		want     bool
	}{
		{ann, []string{"io.ocisnap."}, true},
		{ann, []string{"io.ocisnap.export"}, true},
		{ann, []string{"io.ocisnap.restore", "dev.gvisor."}, false},
		{map[string]string{"io.ocisnap.restore": "/a"}, []string{"io.ocisnap.restore"}, true},
		{map[string]string{"io.ocisnap.restore.web": "/a"}, []string{"io.ocisnap.restore"}, true},
		{nil, []string{"io.ocisnap."}, false},
		{ann, nil, false},
	}
	for i, tt := range tests {
		if got := HasAny(tt.ann, tt.prefixes...); got != tt.want {
			t.Errorf("%d: HasAny(%v, %v) = %v", i, tt.ann, tt.prefixes, got)
		}
	}
}

func TestMountDestinationsAndMappings(t *testing.T) {
	spec := &specs.Spec{
		Mounts: []specs.Mount{
			{Destination: "/proc"},
			{Destination: "/etc//hosts/"},
			{Destination: "run/secrets"},
			{Destination: "/proc"},
			{Destination: ""},
			{Destination: "/../dev"},
		},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
		},
	}
	c := &Container{Spec: spec}
	want := []string{"/proc", "/etc/hosts", "/run/secrets", "/dev"}
	if got := c.MountDestinations(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if m := c.UIDMappings(); len(m) != 1 || m[0].HostID != 100000 {
		t.Errorf("uid mappings %v", m)
	}
	if m := c.GIDMappings(); len(m) != 1 || m[0].HostID != 200000 {
		t.Errorf("gid mappings %v", m)
	}
	c = &Container{Spec: &specs.Spec{}}
	if c.UIDMappings() != nil || c.GIDMappings() != nil {
		t.Error("no linux section: want nil mappings")
	}
}
