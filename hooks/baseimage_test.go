package hooks

import (
	"testing"

	"github.com/ocisnap/ocisnap/pkg/location"
)

// TestBaseMismatch: bases are compared on the strongest identity both
// record (digest, then name, then lower chain); nothing recorded on either
// side is no mismatch.
func TestBaseMismatch(t *testing.T) {
	b := func(name, dig, chain string) *location.BaseImage {
		return &location.BaseImage{Name: name, Digest: dig, LowerChain: chain}
	}
	for _, c := range []struct {
		name              string
		recorded, current *location.BaseImage
		was, is           string
	}{
		{"nothing recorded", nil, b("a", "", ""), "", ""},
		{"same name", b("app:1", "", ""), b("app:1", "", ""), "", ""},
		{"other name", b("app:1", "", ""), b("app:2", "", ""), "app:1", "app:2"},
		{"same digest, renamed", b("app:1", "sha256:1", ""), b("app:latest", "sha256:1", ""), "", ""},
		{"other digest, same name", b("app:1", "sha256:1", ""), b("app:1", "sha256:2", ""), "app:1@sha256:1", "app:1@sha256:2"},
		{"other chain", b("", "", "sha256:c1"), b("", "", "sha256:c2"), "lower layers sha256:c1", "lower layers sha256:c2"},
		{"nothing in common", b("app:1", "", ""), b("", "", "sha256:c2"), "", ""},
	} {
		was, is := baseMismatch(c.recorded, c.current)
		if was != c.was || is != c.is {
			t.Errorf("%s: baseMismatch = %q, %q; want %q, %q", c.name, was, is, c.was, c.is)
		}
	}
}
