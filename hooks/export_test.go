package hooks

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// stubUpper is the writable layer of a container that had a view bind at
// /artifacts/vmlinuz (the hook created /artifacts and the empty file
// vmlinuz) and at /run/boot/vmlinuz (the hook created /run/boot) and that
// wrote /artifacts/notes.txt and /artifacts/sub/f. old records the stubs as
// a hook before statefile.Bind.Stubs did: the outermost one only.
func stubUpper(t *testing.T, old bool) (string, []statefile.View) {
	t.Helper()
	upper := t.TempDir()
	for p, content := range map[string]string{
		"artifacts/vmlinuz": "", "artifacts/notes.txt": "NOTES", "artifacts/sub/f": "F",
		"run/boot/vmlinuz": "", "etc/hosts": "",
	} {
		writeFile(t, filepath.Join(upper, p), content)
	}
	if old {
		return upper, []statefile.View{{Kind: "image", Binds: []statefile.Bind{
			{Src: "boot/vmlinuz", Dst: "/artifacts/vmlinuz", Stub: "/artifacts"},
			{Src: "boot/vmlinuz", Dst: "/run/boot/vmlinuz", Stub: "/run/boot"},
		}}}
	}
	return upper, []statefile.View{{Kind: "image", Binds: []statefile.Bind{
		{Src: "boot/vmlinuz", Dst: "/artifacts/vmlinuz",
			Stubs: []statefile.Stub{{Path: "/artifacts", Dir: true}, {Path: "/artifacts/vmlinuz"}}},
		{Src: "boot/vmlinuz", Dst: "/run/boot/vmlinuz",
			Stubs: []statefile.Stub{{Path: "/run/boot", Dir: true}, {Path: "/run/boot/vmlinuz"}}},
	}}}
}

// tarNames lists the entries of an (uncompressed) snapshot.
func tarNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestWriteOptsExcludesOnlyStubs: with the stubs still in the upper (an
// `ocisnap export` of a running container, or a release that failed), the
// export leaves out the bind destinations and the stub directory holding
// nothing else, and keeps what the container wrote beside a destination.
func TestWriteOptsExcludesOnlyStubs(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(map[bool]string{false: "record", true: "old-record"}[old], func(t *testing.T) {
			testWriteOptsExcludesOnlyStubs(t, old)
		})
	}
}

func testWriteOptsExcludesOnlyStubs(t *testing.T, old bool) {
	upper, views := stubUpper(t, old)
	rec := &statefile.Record{Overlay: &statefile.Overlay{Upper: upper}, Views: views,
		MountDestinations: []string{"/etc/hosts"}}
	var buf bytes.Buffer
	if _, err := layer.Write(context.Background(), &buf, upper, writeOpts(rec)...); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, &buf)
	for _, want := range []string{"./artifacts/", "./artifacts/notes.txt", "./artifacts/sub/", "./artifacts/sub/f"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s is not exported: %q", want, names)
		}
	}
	for _, stub := range []string{"./artifacts/vmlinuz", "./run/boot/", "./run/boot/vmlinuz", "./etc/hosts"} {
		if slices.Contains(names, stub) {
			t.Errorf("stub %s is exported: %q", stub, names)
		}
	}
}

// TestPoststopKeepsFilesBesideBinds: poststop with the rootfs unmounted
// (CRI-O): the stubs are removed from the upper, the files beside the
// bind destination stay there and are exported.
func TestPoststopKeepsFilesBesideBinds(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(map[bool]string{false: "record", true: "old-record"}[old], func(t *testing.T) {
			testPoststopKeepsFilesBesideBinds(t, old)
		})
	}
}

func testPoststopKeepsFilesBesideBinds(t *testing.T, old bool) {
	upper, views := stubUpper(t, old)
	allow := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.StatusDir = t.TempDir()
	cfg.Policy.AllowDirs = []string{allow}
	var log bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	dest := filepath.Join(allow, "snap.tar")
	rec := &statefile.Record{ID: "c1", Rootfs: filepath.Join(t.TempDir(), "unmounted"),
		Overlay: &statefile.Overlay{Upper: upper}, Views: views,
		Export: &statefile.Export{Dest: dest}}
	if err := (statefile.Dir{Path: cfg.StateDir}).Write(rec); err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": "c1", "status": "stopped", "bundle": "/nonexistent"})
	if err := Run(context.Background(), cfg, bytes.NewReader(st)); err != nil {
		t.Fatalf("poststop: %v\n%s", err, log.String())
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("poststop logged an error:\n%s", log.String())
	}
	for p, want := range map[string]string{"artifacts/notes.txt": "NOTES", "artifacts/sub/f": "F"} {
		if got, err := os.ReadFile(filepath.Join(upper, p)); err != nil || string(got) != want {
			t.Errorf("the container's %s after release: %q, %v", p, got, err)
		}
	}
	for _, stub := range []string{"artifacts/vmlinuz", "run/boot"} {
		if _, err := os.Lstat(filepath.Join(upper, stub)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stub %s left in the upper: %v", stub, err)
		}
	}
	f, err := os.Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := tarNames(t, f)
	for _, want := range []string{"./artifacts/notes.txt", "./artifacts/sub/f"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s is not exported: %q", want, names)
		}
	}
	for _, stub := range []string{"./artifacts/vmlinuz", "./run/boot/"} {
		if slices.Contains(names, stub) {
			t.Errorf("stub %s is exported: %q", stub, names)
		}
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
