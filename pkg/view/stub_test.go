package view

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestExcludes: an export leaves out the bind destinations and the stubs
// still recorded that hold nothing of the container's, never a file beside
// a destination nor a stub directory holding one.
func TestExcludes(t *testing.T) {
	upper := t.TempDir()
	for p, content := range map[string]string{
		"artifacts/vmlinuz":   "",
		"artifacts/notes.txt": "NOTES",
		"artifacts/sub/f":     "F",
		"run/boot/vmlinuz":    "",
		"run/boot/initrd.img": "",
		"deep/a/b/initrd.img": "",
		"deep/a/x":            "X",
		"old/vmlinuz":         "",
		"dev/null":            "",
		"full/vmlinuz":        "WRITTEN", // a destination is left out, whatever it holds
	} {
		if err := os.MkdirAll(filepath.Join(upper, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(upper, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(upper, "mnt/view"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := func(p string) Stub { return Stub{Path: p, Dir: true} }
	file := func(p string) Stub { return Stub{Path: p} }
	views := []State{{Kind: "image", Binds: []BindState{
		{Dst: "/artifacts/vmlinuz", Stubs: []Stub{dir("/artifacts"), file("/artifacts/vmlinuz")}},
		{Dst: "/run/boot/vmlinuz", Stubs: []Stub{dir("/run/boot"), file("/run/boot/vmlinuz")}},
		{Dst: "/var/run/boot/initrd.img", Stubs: []Stub{file("/run/boot/initrd.img")}},
		{Dst: "/deep/a/b/initrd.img", Stubs: []Stub{dir("/deep"), dir("/deep/a"), dir("/deep/a/b"), file("/deep/a/b/initrd.img")}},
		{Dst: "/mnt/view", Stubs: []Stub{dir("/mnt"), dir("/mnt/view")}},
		{Dst: "/old/vmlinuz", LegacyStub: "/old"}, // an older version's record
		{Dst: "/full/vmlinuz", Stubs: []Stub{dir("/full"), file("/full/vmlinuz")}},
	}}}
	got := Excludes(upper, views, []string{"/dev"})
	for _, want := range []string{"/dev", "/artifacts/vmlinuz", "/run/boot", "/var/run/boot/initrd.img",
		"/deep/a/b", "/mnt", "/old", "/full/vmlinuz", "/full"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s is not left out: %v", want, got)
		}
	}
	for _, kept := range []string{"/artifacts", "/artifacts/notes.txt", "/artifacts/sub", "/deep", "/deep/a", "/run"} {
		if slices.Contains(got, kept) {
			t.Errorf("%s is left out: %v", kept, got)
		}
	}
	// Without the upper (nothing to look at), only the destinations.
	got = Excludes(filepath.Join(upper, "missing"), views, nil)
	if slices.Contains(got, "/run/boot") || slices.Contains(got, "/artifacts") || !slices.Contains(got, "/artifacts/vmlinuz") {
		t.Errorf("without the upper: %v", got)
	}
}
