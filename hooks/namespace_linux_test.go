package hooks

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

// TestGCTemplateDir: gc walks a {namespace} template's prefix, so a stale
// temporary export in any tenant's directory is removed.
func TestGCTemplateDir(t *testing.T) {
	base := t.TempDir()
	mkdir(t, filepath.Join(base, "tenants", "team-a"))
	stale := writeStale(t, filepath.Join(base, "tenants", "team-a"))
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(base, "state")
	cfg.Policy.AllowDirs = []string{filepath.Join(base, "tenants", "{namespace}")}
	cfg.Policy.ViewDirs = []string{filepath.Join(base, "views")}
	rep, err := GC(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Temps, stale) {
		t.Errorf("gc removed %v, want %s", rep.Temps, stale)
	}
}
