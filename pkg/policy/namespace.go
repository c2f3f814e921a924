package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NamespacePlaceholder in an --allow-dir (or --allow-registry) value stands
// for the container's Kubernetes namespace (README.md, "Kubernetes"): one
// value gives each tenant its own directory or repository prefix. A value
// holding it is a template: it allows nothing until Scoped replaces the
// placeholder, and nothing at all for a container without a namespace.
const NamespacePlaceholder = "{namespace}"

// HasNamespace reports whether value is a template holding the placeholder.
func HasNamespace(value string) bool { return strings.Contains(value, NamespacePlaceholder) }

// SubstituteNamespace returns value with every NamespacePlaceholder
// replaced by ns, and true; a value without the placeholder is returned
// unchanged. It returns false when value holds the placeholder and ns is
// not a Kubernetes namespace name (1 to 63 of [a-z0-9-], not starting or
// ending with "-"; so never "", "." or anything with "/"): such a value
// then allows nothing. Both the allowed directories and the allowed
// registry prefixes are scoped with it.
func SubstituteNamespace(value, ns string) (string, bool) {
	if !HasNamespace(value) {
		return value, true
	}
	if !ValidNamespace(ns) {
		return "", false
	}
	return strings.ReplaceAll(value, NamespacePlaceholder, ns), true
}

// Scoped returns a copy of p for a container in the Kubernetes namespace ns
// ("" when it has none or none that can be trusted): every allowed
// directory and registry prefix holding NamespacePlaceholder is replaced by
// its substitution,
// or dropped when ns is not a valid namespace. Other fields are unchanged.
// The checks and Open methods ignore templates, so an unscoped policy never
// allows a path through one.
func (p Policy) Scoped(ns string) Policy {
	q := p
	q.AllowDirs = nil
	for _, d := range p.AllowDirs {
		if s, ok := SubstituteNamespace(d, ns); ok {
			q.AllowDirs = append(q.AllowDirs, s)
		}
	}
	q.AllowRegistries = nil
	for _, r := range p.AllowRegistries {
		if s, ok := SubstituteNamespace(r, ns); ok {
			q.AllowRegistries = append(q.AllowRegistries, s)
		}
	}
	return q
}

// TemplatePrefix returns the directory a template directory's tenants all
// live below: the part before the first placeholder, up to its last "/"
// ("/var/lib/ocisnap/tenants/{namespace}" and
// "/var/lib/ocisnap/tenants/ns-{namespace}" both give
// "/var/lib/ocisnap/tenants"). A value without the placeholder is returned
// cleaned.
func TemplatePrefix(dir string) string {
	i := strings.Index(dir, NamespacePlaceholder)
	if i < 0 {
		return filepath.Clean(dir)
	}
	before := dir[:i]
	if j := strings.LastIndexByte(before, '/'); j >= 0 {
		before = before[:j+1]
	}
	return filepath.Clean(before)
}

// MkdirScoped creates (mode 0700) the directories of p.AllowDirs that came
// from the template dirs of the unscoped policy base and do not exist yet,
// inside the template's prefix directory, which must exist (the
// administrator's) and is not left through a symlink. It lets a tenant's
// first export create its directory.
func MkdirScoped(base *Policy, ns string) error {
	var errs []error
	for _, d := range base.AllowDirs {
		if !HasNamespace(d) || !filepath.IsAbs(d) {
			continue
		}
		s, ok := SubstituteNamespace(d, ns)
		if !ok {
			continue
		}
		if _, err := os.Lstat(s); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		prefix := TemplatePrefix(d)
		rel, ok := within(prefix, filepath.Clean(s))
		if !ok {
			continue
		}
		root, err := os.OpenRoot(prefix)
		if err != nil {
			errs = append(errs, fmt.Errorf("allowed directory %q: %w", d, err))
			continue
		}
		if err := root.MkdirAll(rel, 0o700); err != nil {
			errs = append(errs, fmt.Errorf("create %q for namespace %s: %w", s, ns, err))
		}
		root.Close()
	}
	return errors.Join(errs...)
}

// ValidNamespace reports whether ns is a Kubernetes namespace name: 1 to 63
// characters of [a-z0-9-], starting and ending with a letter or digit (an
// RFC 1123 label), so that it is safe as one path component.
func ValidNamespace(ns string) bool {
	if ns == "" || len(ns) > 63 || ns[0] == '-' || ns[len(ns)-1] == '-' {
		return false
	}
	for _, r := range ns {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}
