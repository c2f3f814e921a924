package hooks

import (
	"os"
	"path/filepath"
	"testing"
)

// podmanImageName finds the image whose top layer is the topmost lower,
// through containers/storage's overlay/l/ symlink, and nothing for a
// lower outside containers/storage or of no image.
func TestPodmanImageName(t *testing.T) {
	root := t.TempDir()
	for _, id := range []string{"base0", "top1", "other"} {
		if err := os.MkdirAll(filepath.Join(root, "overlay", id, "diff"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "overlay", "l"), 0o755)
	if err := os.Symlink("../top1/diff", filepath.Join(root, "overlay", "l", "SHORT")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "overlay-images"), 0o700)
	images := `[{"id":"i1","names":["localhost/other:1"],"layer":"other"},` +
		`{"id":"i2","names":["localhost/app:latest","localhost/app:v2"],"layer":"top1","metadata":"{}"},` +
		`{"id":"i3","layer":"base0"}]`
	if err := os.WriteFile(filepath.Join(root, "overlay-images", "images.json"), []byte(images), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lowers []string
		want   string
	}{
		{[]string{filepath.Join(root, "overlay", "l", "SHORT"), filepath.Join(root, "overlay", "base0", "diff")}, "localhost/app:latest"},
		{[]string{filepath.Join(root, "overlay", "top1", "diff")}, "localhost/app:latest"},
		{[]string{filepath.Join(root, "overlay", "base0", "diff")}, ""}, // an image without a name
		{[]string{filepath.Join(root, "overlay", "none", "diff")}, ""},
		{[]string{t.TempDir()}, ""},
		{nil, ""},
	} {
		if got := podmanImageName(tc.lowers); got != tc.want {
			t.Errorf("podmanImageName(%v) = %q, want %q", tc.lowers, got, tc.want)
		}
	}
}
