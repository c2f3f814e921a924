package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrRegistryNotAllowed is wrapped by the error refusing a registry
// repository that no --allow-registry prefix covers.
var ErrRegistryNotAllowed = errors.New("policy: registry repository not allowed")

// CheckRegistry reports whether the repository hostRepo
// ("host[:port]/path/to/repo", no tag or digest) is allowed by one of
// p.AllowRegistries (--allow-registry). A prefix matches on whole path
// components: "reg.example.com/snaps" and "reg.example.com/snaps/" allow
// "reg.example.com/snaps" and everything below it, never
// "reg.example.com/snapshots". The host part is compared exactly (a port is
// part of it). No prefix allows nothing: docker:// locations are refused
// until the administrator allows a repository (README.md, "Security
// model"). It touches no network.
func (p *Policy) CheckRegistry(hostRepo string) error {
	if hostRepo == "" || strings.ContainsAny(hostRepo, "\x00@") {
		return fmt.Errorf("repository %q: invalid: %w", hostRepo, ErrRegistryNotAllowed)
	}
	for _, pre := range p.AllowRegistries {
		pre = strings.TrimSuffix(pre, "/")
		if pre == "" {
			continue
		}
		if hostRepo == pre || strings.HasPrefix(hostRepo, pre+"/") {
			return nil
		}
	}
	if len(p.AllowRegistries) == 0 {
		return fmt.Errorf("repository %q: no registry is allowed (--allow-registry): %w", hostRepo, ErrRegistryNotAllowed)
	}
	return fmt.Errorf("repository %q: not under an allowed registry prefix (--allow-registry %s): %w",
		hostRepo, strings.Join(p.AllowRegistries, ", "), ErrRegistryNotAllowed)
}

// validateRegistries refuses an --allow-registry value that could never
// match what a docker:// location names: a scheme, a tag or digest, no
// repository path after the host, or an empty component.
func (p *Policy) validateRegistries() error {
	for _, pre := range p.AllowRegistries {
		v := strings.TrimSuffix(pre, "/")
		host, path, ok := strings.Cut(v, "/")
		switch {
		case strings.Contains(pre, "://"):
			return fmt.Errorf("policy: --allow-registry %q: give host[:port]/path, without a scheme", pre)
		case !ok || host == "" || path == "" || strings.Contains(v, "//"):
			return fmt.Errorf("policy: --allow-registry %q: want host[:port]/repository-prefix", pre)
		case strings.ContainsAny(path, "@: "):
			return fmt.Errorf("policy: --allow-registry %q: a repository prefix has no tag or digest", pre)
		}
	}
	return nil
}
