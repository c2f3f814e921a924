package location

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// TestInsecureRegistry: registries.conf(5) v2 [[registry]] tables and v1
// [registries.insecure], drop-ins overriding the main file, the longest
// matching prefix deciding, "*.domain" wildcards.
func TestInsecureRegistry(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(conf, []byte(`
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "reg.local:5000"
insecure = true

[[registry]]
location = "reg.local:5000/secure"
insecure = false

[[registry]]
location = "*.lab.example"
insecure = true

[[registry]]
prefix = "mirror.example/team"
location = "other.example/team"
insecure = true

[[registry]]
location = "dropin.example"
insecure = true
`), 0o644))
	must(os.Mkdir(conf+".d", 0o755))
	must(os.WriteFile(filepath.Join(conf+".d", "10-override.conf"), []byte(`
[[registry]]
location = "dropin.example"
insecure = false
`), 0o644))
	must(os.WriteFile(filepath.Join(conf+".d", "ignored.txt"), []byte(`not toml [`), 0o644))
	v1 := filepath.Join(dir, "v1.conf")
	must(os.WriteFile(v1, []byte("[registries.insecure]\nregistries = ['old.example:443']\n"), 0o644))

	for _, c := range []struct {
		file, host, repo string
		want             bool
	}{
		{conf, "reg.local:5000", "snaps/app", true},
		{conf, "reg.local:5000", "secure/app", false},
		{conf, "reg.local:5000", "secureish/app", true},
		{conf, "reg.local", "snaps/app", false},
		{conf, "reg.local:50000", "snaps/app", false},
		{conf, "a.lab.example", "x", true},
		{conf, "lab.example", "x", false},
		{conf, "mirror.example", "team/app", true},
		{conf, "other.example", "team/app", false},
		{conf, "dropin.example", "x", false},
		{conf, "elsewhere", "x", false},
		{v1, "old.example:443", "x", true},
		{filepath.Join(dir, "missing.conf"), "reg.local:5000", "x", false},
	} {
		got, err := insecureRegistry(c.file, c.host, c.repo)
		if err != nil || got != c.want {
			t.Errorf("%s: %s/%s insecure = %v, %v; want %v", filepath.Base(c.file), c.host, c.repo, got, err, c.want)
		}
	}
	bad := filepath.Join(dir, "bad.conf")
	must(os.WriteFile(bad, []byte("[[registry]\n"), 0o644))
	if _, err := insecureRegistry(bad, "h", "r"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a broken registries.conf: %v, want an error naming it", err)
	}
}

// TestInsecureRegistryTLS: a registry with a certificate no CA vouches
// for is refused, unless registries.conf marks it insecure; then it is
// reached (over https still), and another registry on the same host stays
// verified.
func TestInsecureRegistryTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	open := func(repo string) error {
		p := &policy.Policy{AllowRegistries: []string{host}}
		reg := Registry{RegistriesConf: conf, CertsDir: filepath.Join(dir, "certs.d"), AuthFile: filepath.Join(dir, "auth.json")}
		if err := os.WriteFile(reg.AuthFile, []byte(`{"auths":{}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := ParseSource("docker://"+host+"/"+repo+":v1", p, WithRegistry(reg))
		if err != nil {
			t.Fatal(err)
		}
		snap, err := src.Open(context.Background())
		if err == nil {
			snap.Close()
		}
		return err
	}
	if err := open("snaps/app"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without registries.conf: %v, want a certificate error", err)
	}
	if err := os.WriteFile(conf, []byte("[[registry]]\nlocation = \""+host+"/snaps\"\ninsecure = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := open("snaps/app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("insecure: %v, want the registry reached (ErrNotFound)", err)
	}
	if err := open("other/app"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("another repository of the host: %v, want a certificate error", err)
	}
}
