package policy

import (
	"errors"
	"testing"
)

func TestCheckRegistry(t *testing.T) {
	p := &Policy{AllowRegistries: []string{"reg.example.com/snaps/", "127.0.0.1:5000/team"}}
	for _, tt := range []struct {
		repo string
		ok   bool
	}{
		{"reg.example.com/snaps/app", true},
		{"reg.example.com/snaps/a/b", true},
		{"reg.example.com/snaps", true},
		{"reg.example.com/snapshots/app", false},
		{"reg.example.com/other", false},
		{"reg.example.com:443/snaps/app", false},
		{"evil.com/reg.example.com/snaps/app", false},
		{"127.0.0.1:5000/team/x", true},
		{"127.0.0.1:5000/teamx", false},
		{"127.0.0.1/team/x", false},
		{"", false},
	} {
		err := p.CheckRegistry(tt.repo)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrRegistryNotAllowed)) {
			t.Errorf("CheckRegistry(%q) = %v, want ok=%v", tt.repo, err, tt.ok)
		}
	}
	if err := (&Policy{}).CheckRegistry("reg.example.com/snaps/app"); !errors.Is(err, ErrRegistryNotAllowed) {
		t.Errorf("no prefix: %v", err)
	}
}

func TestValidateRegistries(t *testing.T) {
	for _, bad := range []string{"docker://reg.example.com/snaps", "reg.example.com", "reg.example.com/", "/snaps",
		"reg.example.com/snaps:v1", "reg.example.com//snaps"} {
		p := &Policy{AllowRegistries: []string{bad}}
		if err := p.Validate(); err == nil {
			t.Errorf("--allow-registry %q accepted", bad)
		}
	}
	p := &Policy{AllowRegistries: []string{"reg.example.com/snaps/", "127.0.0.1:5000/a"}}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
}
