package hooks

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
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

// TestStatusDirChecked: the hook refuses a --status-dir that is relative,
// or that is, holds or is inside an allowed or view directory (an
// annotation could then write the failure records); the defaults pass.
func TestStatusDirChecked(t *testing.T) {
	base := []string{"--allow-dir", "/srv/snaps", "--allow-view-dir", "/srv/views"}
	for _, tc := range []struct {
		dir string
		ok  bool
	}{
		{"/var/lib/ocisnap-status", true},
		{"/srv/status", true},
		{"/srv/snaps-status", true},
		{"relative", false},
		{"/srv/snaps", false},
		{"/srv/snaps/status", false},
		{"/srv/views/./status/", false},
		{"/srv", false},
	} {
		cl := NewCommandLine()
		err := cl.Parse(append(append([]string(nil), base...), "--status-dir", tc.dir))
		if (err == nil) != tc.ok {
			t.Errorf("--status-dir %s: %v, want ok %v", tc.dir, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--status-dir") {
			t.Errorf("--status-dir %s: %v does not name the flag", tc.dir, err)
		}
	}
	if err := NewCommandLine().Parse(nil); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
