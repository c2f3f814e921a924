package hooks

import (
	"strings"
	"testing"
	"time"
)

// TestRegistryFlags: the registry flags reach the configuration; a spool
// directory overlapping an allowed or view directory, a relative one and
// a non-positive timeout are refused, naming the flag.
func TestRegistryFlags(t *testing.T) {
	c := NewCommandLine()
	err := c.Parse([]string{"--allow-dir", "/srv/snaps", "--allow-registry", "reg.example.com/snaps/",
		"--allow-registry", "reg2.example.com/x", "--registry-auth-file", "/etc/ocisnap/auth.json",
		"--registry-certs-dir", "/etc/ocisnap/certs.d", "--registry-timeout", "30s", "--spool-dir", "/var/spool/ocisnap"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config
	if len(cfg.Policy.AllowRegistries) != 2 || cfg.Registry.AuthFile != "/etc/ocisnap/auth.json" ||
		cfg.Registry.CertsDir != "/etc/ocisnap/certs.d" || cfg.RegistryTimeout != 30*time.Second ||
		cfg.Registry.SpoolDir != "/var/spool/ocisnap" {
		t.Errorf("config %+v", cfg)
	}
	if d := NewCommandLine().Config; len(d.Policy.AllowRegistries) != 0 || d.RegistryTimeout <= 0 || d.RegistryTimeout >= 2*time.Minute {
		t.Errorf("defaults: registries %v, timeout %v", d.Policy.AllowRegistries, d.RegistryTimeout)
	}
	for _, args := range [][]string{
		{"--allow-dir", "/srv/snaps", "--spool-dir", "/srv/snaps/spool"},
		{"--allow-dir", "/srv/snaps/in", "--spool-dir", "/srv/snaps"},
		{"--allow-view-dir", "/srv/views", "--spool-dir", "/srv/views"},
		{"--spool-dir", "relative"},
		{"--registry-timeout", "0s"},
	} {
		c := NewCommandLine()
		err := c.Parse(args)
		if err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
