package location

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Credentials and CAs follow what podman, CRI-O and skopeo users already
// have (docs/locations.md, "Credentials and certificates"):
// containers-auth.json(5) and containers-certs.d(5). Nothing read here is
// ever put in a log record, an error, a state file or a snapshot: errors
// name the file, never its content.

// DefaultCertsDir is containers-certs.d(5)'s system directory.
const DefaultCertsDir = "/etc/containers/certs.d"

// credential is a user name and secret, or an identity token.
type credential struct {
	Username, Password, IdentityToken string
}

// DefaultAuthFiles is the lookup podman does for uid (and home, its home
// directory): $XDG_RUNTIME_DIR/containers/auth.json, or
// /run/containers/<uid>/auth.json when XDG_RUNTIME_DIR is not set, then
// ~/.config/containers/auth.json, then Docker's ~/.docker/config.json.
func DefaultAuthFiles() []string {
	var files []string
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		files = append(files, filepath.Join(x, "containers/auth.json"))
	} else {
		files = append(files, filepath.Join("/run/containers", strconv.Itoa(os.Getuid()), "auth.json"))
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		files = append(files, filepath.Join(home, ".config/containers/auth.json"),
			filepath.Join(home, ".docker/config.json"))
	}
	return files
}

// authKeys are the keys looked up for a repository, most specific first:
// host/ns/repo, host/ns, host.
func authKeys(host, repo string) []string {
	keys := []string{}
	parts := strings.Split(repo, "/")
	for i := len(parts); i > 0; i-- {
		keys = append(keys, host+"/"+strings.Join(parts[:i], "/"))
	}
	return append(keys, host)
}

// normalizeAuthKey drops a scheme and a trailing slash (Docker's legacy
// "https://host/v1/" keys name the host).
func normalizeAuthKey(k string) string {
	if rest, ok := strings.CutPrefix(k, "https://"); ok {
		k = rest
		k, _, _ = strings.Cut(k, "/")
	} else if rest, ok := strings.CutPrefix(k, "http://"); ok {
		k = rest
		k, _, _ = strings.Cut(k, "/")
	}
	return strings.TrimSuffix(k, "/")
}

// lookupCredential returns the credential for host/repo: from file if it
// is given (a missing file is an error then), otherwise from the first of
// DefaultAuthFiles that has one. None found is the zero credential.
func lookupCredential(file, host, repo string) (credential, error) {
	files, explicit := []string{file}, true
	if file == "" {
		files, explicit = DefaultAuthFiles(), false
	}
	for _, f := range files {
		c, ok, err := credentialFrom(f, host, repo)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return credential{}, err
		}
		if ok {
			return c, nil
		}
	}
	return credential{}, nil
}

type authEntry struct {
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
}

func credentialFrom(file, host, repo string) (credential, bool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return credential{}, false, fmt.Errorf("registry auth file %s: %w", file, unwrapPathErr(err))
	}
	var doc struct {
		Auths map[string]authEntry `json:"auths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		// The decoder's message may quote the file: say only where.
		return credential{}, false, fmt.Errorf("registry auth file %s: not valid JSON", file)
	}
	byKey := make(map[string]authEntry, len(doc.Auths))
	for k, v := range doc.Auths {
		byKey[normalizeAuthKey(k)] = v
	}
	for _, k := range authKeys(host, repo) {
		e, ok := byKey[k]
		if !ok {
			continue
		}
		c := credential{IdentityToken: e.IdentityToken}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return credential{}, false, fmt.Errorf("registry auth file %s: entry %q: auth is not base64", file, k)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return credential{}, false, fmt.Errorf("registry auth file %s: entry %q: auth is not user:password", file, k)
			}
			c.Username, c.Password = u, p
		}
		return c, true, nil
	}
	return credential{}, false, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// tlsConfig is the TLS configuration for hostPort from certs.d: the
// system's CAs plus every *.crt of <certsDir>/<host:port>/, and a client
// certificate for each *.cert with its *.key (a *.cert without its key is
// an error). A missing directory adds nothing. Verification is turned
// off only for a registry registries.conf(5) marks insecure (newClient).
func tlsConfig(certsDir, hostPort string) (*tls.Config, error) {
	if certsDir == "" {
		certsDir = DefaultCertsDir
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if strings.ContainsAny(hostPort, "/\x00") || hostPort == "." || hostPort == ".." {
		return nil, fmt.Errorf("registry host %q: invalid", hostPort)
	}
	dir := filepath.Join(certsDir, hostPort)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry certificates %s: %w", dir, unwrapPathErr(err))
	}
	for _, e := range ents {
		name := e.Name()
		full := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, ".crt"):
			pem, err := os.ReadFile(full)
			if err != nil {
				return nil, fmt.Errorf("registry CA %s: %w", full, unwrapPathErr(err))
			}
			if cfg.RootCAs == nil {
				if cfg.RootCAs, err = x509.SystemCertPool(); err != nil || cfg.RootCAs == nil {
					cfg.RootCAs = x509.NewCertPool()
				}
			}
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("registry CA %s: no PEM certificate in it", full)
			}
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(full, ".cert") + ".key"
			c, err := tls.LoadX509KeyPair(full, key)
			if err != nil {
				return nil, fmt.Errorf("registry client certificate %s (key %s): %w", full, key, unwrapPathErr(err))
			}
			cfg.Certificates = append(cfg.Certificates, c)
		case strings.HasSuffix(name, ".key"):
			if _, err := os.Stat(strings.TrimSuffix(full, ".key") + ".cert"); err != nil {
				return nil, fmt.Errorf("registry client key %s has no .cert beside it", full)
			}
		}
	}
	return cfg, nil
}
