package hooks

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// TestUserDefaults: a rootless user's view directory sits beside, not
// inside, their snapshot directory, so the defaults validate.
func TestUserDefaults(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1234")
	t.Setenv("XDG_DATA_HOME", "/home/u/.local/share")
	state, allow, views := userDefaults(1234)
	if state != "/run/user/1234/ocisnap" || allow != "/home/u/.local/share/ocisnap" || views != "/home/u/.local/share/ocisnap-views" {
		t.Fatalf("userDefaults = %s, %s, %s", state, allow, views)
	}
	p := policy.Policy{AllowDirs: []string{allow}, ViewDirs: []string{views}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestViewDirFlag: --allow-view-dir replaces the default and repeats; an
// overlap with --allow-dir fails Validate, naming both.
func TestViewDirFlag(t *testing.T) {
	parse := func(args ...string) Config {
		t.Helper()
		cfg := DefaultConfig()
		fs := pflag.NewFlagSet("ocisnap-hook", pflag.ContinueOnError)
		RegisterFlags(fs, &cfg)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := parse()
	if len(cfg.Policy.ViewDirs) != 1 || filepath.Base(cfg.Policy.ViewDirs[0]) != "ocisnap-views" {
		t.Errorf("default view dirs %v", cfg.Policy.ViewDirs)
	}
	if _, rootless := hostUID(); !rootless && cfg.Policy.ViewDirs[0] != policy.DefaultViewDir {
		t.Errorf("root's default view dir %v, want %s", cfg.Policy.ViewDirs, policy.DefaultViewDir)
	}
	if err := cfg.Policy.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	cfg = parse("--allow-view-dir", "/srv/a", "--allow-view-dir", "/srv/b")
	if !slices.Equal(cfg.Policy.ViewDirs, []string{"/srv/a", "/srv/b"}) {
		t.Errorf("view dirs %v", cfg.Policy.ViewDirs)
	}
	cfg = parse("--allow-dir", "/srv", "--allow-view-dir", "/srv/views")
	if err := cfg.Policy.Validate(); !errors.Is(err, policy.ErrOverlap) {
		t.Errorf("overlap: %v", err)
	}
}
