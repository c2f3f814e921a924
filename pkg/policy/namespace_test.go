package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSubstituteNamespace: the placeholder is replaced by a valid namespace
// name; an empty or hostile one gives no value at all.
func TestSubstituteNamespace(t *testing.T) {
	for _, tc := range []struct {
		value, ns, want string
		ok              bool
	}{
		{"/var/lib/ocisnap/{namespace}", "team-a", "/var/lib/ocisnap/team-a", true},
		{"/var/lib/ocisnap/ns-{namespace}/snaps", "team-a", "/var/lib/ocisnap/ns-team-a/snaps", true},
		{"registry.example.com/snaps/{namespace}/", "team-b", "registry.example.com/snaps/team-b/", true},
		{"/var/lib/ocisnap", "", "/var/lib/ocisnap", true},
		{"/var/lib/ocisnap/{namespace}", "", "", false},
		{"/var/lib/ocisnap/{namespace}", "..", "", false},
		{"/var/lib/ocisnap/{namespace}", "a/../../etc", "", false},
		{"/var/lib/ocisnap/{namespace}", "Team", "", false},
		{"/var/lib/ocisnap/{namespace}", "-a", "", false},
		{"/var/lib/ocisnap/{namespace}", "a.b", "", false},
	} {
		got, ok := SubstituteNamespace(tc.value, tc.ns)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SubstituteNamespace(%q, %q) = %q, %v; want %q, %v", tc.value, tc.ns, got, ok, tc.want, tc.ok)
		}
	}
}

// TestScopedPolicy: a template allows nothing unscoped (not even the
// literal "{namespace}" path), its own tenant's paths once scoped, and
// nothing for a container without a namespace; plain directories stay.
func TestScopedPolicy(t *testing.T) {
	base := t.TempDir()
	tmpl := filepath.Join(base, "tenants", NamespacePlaceholder)
	shared := filepath.Join(base, "shared")
	p := Policy{AllowDirs: []string{tmpl, shared}, ViewDirs: []string{filepath.Join(base, "views")}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	literal := filepath.Join(base, "tenants", NamespacePlaceholder, "s.tar")
	if err := p.Check(literal); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("unscoped Check(%q) = %v, want ErrNotAllowed", literal, err)
	}
	a := p.Scoped("team-a")
	if !slices.Equal(a.AllowDirs, []string{filepath.Join(base, "tenants", "team-a"), shared}) {
		t.Fatalf("Scoped(team-a).AllowDirs = %v", a.AllowDirs)
	}
	if err := a.Check(filepath.Join(base, "tenants", "team-a", "s.tar")); err != nil {
		t.Errorf("team-a's own snapshot: %v", err)
	}
	if err := a.Check(filepath.Join(base, "tenants", "team-b", "s.tar")); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("team-b's snapshot from team-a: %v, want ErrNotAllowed", err)
	}
	none := p.Scoped("")
	if !slices.Equal(none.AllowDirs, []string{shared}) {
		t.Errorf("Scoped(\"\").AllowDirs = %v, want only %s", none.AllowDirs, shared)
	}
	if len(p.AllowDirs) != 2 || p.AllowDirs[0] != tmpl {
		t.Errorf("Scoped changed the base policy: %v", p.AllowDirs)
	}
}

// TestValidateTemplateOverlap: the overlap check compares a template's
// prefix, so a view directory below it (where some tenant's directory
// could be) or above it is refused; beside it is fine; a template in
// --allow-view-dir is refused.
func TestValidateTemplateOverlap(t *testing.T) {
	base := t.TempDir()
	tmpl := filepath.Join(base, "snaps", "t-"+NamespacePlaceholder)
	for _, tc := range []struct {
		view    string
		overlap bool
	}{
		{filepath.Join(base, "snaps", "team-a"), true},
		{filepath.Join(base, "snaps"), true},
		{base, true},
		{filepath.Join(base, "views"), false},
		{filepath.Join(base, "snaps-views"), false},
	} {
		p := Policy{AllowDirs: []string{tmpl}, ViewDirs: []string{tc.view}}
		err := p.Validate()
		if got := errors.Is(err, ErrOverlap); got != tc.overlap {
			t.Errorf("view %s and %s: Validate = %v, want overlap %v", tc.view, tmpl, err, tc.overlap)
		}
	}
	p := Policy{AllowDirs: []string{filepath.Join(base, "a")}, ViewDirs: []string{filepath.Join(base, "v", NamespacePlaceholder)}}
	if err := p.Validate(); err == nil {
		t.Error("a {namespace} view directory validated")
	}
}

// TestMkdirScoped: a tenant's directory is created 0700 inside the
// template's existing prefix; a prefix that is a symlink out is not
// followed out of itself, and no directory is made for no namespace.
func TestMkdirScoped(t *testing.T) {
	base := t.TempDir()
	prefix := filepath.Join(base, "tenants")
	if err := os.Mkdir(prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	p := Policy{AllowDirs: []string{filepath.Join(prefix, NamespacePlaceholder)}}
	if err := MkdirScoped(&p, "team-a"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(prefix, "team-a"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("team-a's directory: %v %v", fi, err)
	}
	if err := MkdirScoped(&p, ""); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(prefix); len(ents) != 1 {
		t.Errorf("entries after an empty namespace: %v", ents)
	}
	// A tenant name planted as a symlink leading out is not followed.
	out := t.TempDir()
	if err := os.Symlink(out, filepath.Join(prefix, "team-b")); err != nil {
		t.Fatal(err)
	}
	p.AllowDirs = []string{filepath.Join(prefix, NamespacePlaceholder, "snaps")}
	if err := MkdirScoped(&p, "team-b"); err == nil {
		t.Error("MkdirScoped followed a symlink out of the prefix")
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("created outside the prefix: %v", ents)
	}
}

// TestScopedRegistries: {namespace} in an --allow-registry prefix is the
// container's namespace; without a trusted namespace the template allows
// nothing, and a plain prefix is kept either way.
func TestScopedRegistries(t *testing.T) {
	p := Policy{AllowRegistries: []string{"reg.example.com/tenants/" + NamespacePlaceholder + "/", "reg.example.com/shared/"}}
	a := p.Scoped("team-a")
	if !slices.Equal(a.AllowRegistries, []string{"reg.example.com/tenants/team-a/", "reg.example.com/shared/"}) {
		t.Fatalf("Scoped(team-a).AllowRegistries = %v", a.AllowRegistries)
	}
	if err := a.CheckRegistry("reg.example.com/tenants/team-a/app"); err != nil {
		t.Errorf("team-a's own repository: %v", err)
	}
	if err := a.CheckRegistry("reg.example.com/tenants/team-b/app"); !errors.Is(err, ErrRegistryNotAllowed) {
		t.Errorf("team-b's repository from team-a: %v, want ErrRegistryNotAllowed", err)
	}
	none := p.Scoped("")
	if !slices.Equal(none.AllowRegistries, []string{"reg.example.com/shared/"}) {
		t.Errorf("Scoped(\"\").AllowRegistries = %v", none.AllowRegistries)
	}
}
