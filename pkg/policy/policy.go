// Package policy decides which host paths a hook request may touch, and
// resolves such a path into an open handle that cannot escape the
// directories the administrator allowed.
//
// Threat model. The hook runs as root on the host, but the paths it is asked
// to read or write come from annotations, written by whoever creates the
// container (a Kubernetes user, a podman user): they are untrusted, and are
// named unsafePath here. The allowed directories (Policy.AllowDirs) and their
// ancestors belong to the administrator and are trusted: a symlink in
// "/var/lib" or in an allowed directory's own path is followed.
//
// A path is accepted only if it is absolute and, after filepath.Clean, lies
// strictly inside one of AllowDirs (the allowed directory itself is never a
// valid file). The check is lexical; the path is then opened relative to the
// allowed directory through an os.Root, which resolves every component
// without following a symlink (or "..") out of that directory, so someone
// who can write inside an allowed directory and swaps components for
// symlinks while the hook runs still cannot make it open a file outside.
// Non-regular files are refused (a FIFO would block the hook, a device node
// would be read as a snapshot).
//
// Out of scope: bind mounts and other mounts inside an allowed directory
// (os.Root crosses them; only the administrator can create them), and hard
// links to outside files placed inside an allowed directory (the kernel's
// fs.protected_hardlinks=1 keeps unprivileged users from linking files they
// do not own; keep allowed directories writable by root only, as the default
// /var/lib/ocisnap with mode 0700 is).
//
// Do not use this package for paths inside a container's rootfs: those are
// confined by the code that writes them (package layer), not by an
// allow-list.
package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// DefaultAllowDir is the directory snapshots may be read from and written
// to when the administrator names none (CONTRACT.md, install layout).
const DefaultAllowDir = "/var/lib/ocisnap"

// Default restore limits. A container's writable layer is normally far
// below both; they bound what a hostile snapshot can do to the host's disk
// and inode table, not what a legitimate one needs.
const (
	DefaultMaxBytes   int64 = 64 << 30 // 64 GiB of file content
	DefaultMaxEntries int64 = 2_000_000
)

// ErrNotAllowed is wrapped by every error that refuses a path by policy
// (as opposed to an I/O error on an allowed path).
var ErrNotAllowed = errors.New("policy: path not allowed")

// Policy is the administrator's policy, set by hook flags.
type Policy struct {
	// AllowDirs are absolute directories that restore sources, export
	// destinations and dir:/file: view sources must lie inside. Empty
	// allows nothing.
	AllowDirs []string
	// MaxBytes and MaxEntries limit what one restore may write (file
	// content bytes, tar entries); zero or negative means no limit.
	MaxBytes, MaxEntries int64
	// AllowDevices lets a restore create device nodes.
	AllowDevices bool
	// GVisorCompat honours gVisor's dev.gvisor.tar.rootfs.upper annotation.
	GVisorCompat bool
}

// Default returns the policy with no flags given: DefaultAllowDir, the
// default limits, no devices, no gVisor compatibility.
func Default() Policy {
	return Policy{
		AllowDirs:  []string{DefaultAllowDir},
		MaxBytes:   DefaultMaxBytes,
		MaxEntries: DefaultMaxEntries,
	}
}

// Validate reports a configuration error: an allowed directory that is not
// an absolute path (such entries are ignored by the checks, never trusted).
func (p *Policy) Validate() error {
	for _, d := range p.AllowDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("policy: allowed directory %q is not an absolute path", d)
		}
	}
	return nil
}

// PathError is the error of a refused or failed path. Its text starts with
// the quoted path, so callers name the role in front of it:
// fmt.Errorf("restore source %w", err) reads
//
//	restore source "/etc/shadow": not inside an allowed directory (/var/lib/ocisnap): policy: path not allowed
type PathError struct {
	Path   string // the path as given (unsafe)
	Reason string // why it was refused; empty for a plain I/O error
	Err    error  // ErrNotAllowed, or the os error
}

func (e *PathError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%q: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("%q: %s: %v", e.Path, e.Reason, e.Err)
}

func (e *PathError) Unwrap() error { return e.Err }

func notAllowed(unsafePath, reason string) error {
	return &PathError{Path: unsafePath, Reason: reason, Err: ErrNotAllowed}
}

// Check reports whether unsafePath is lexically allowed: absolute and
// strictly inside an allowed directory. It touches no file; use it to refuse
// early (at create time) what the Open methods would refuse later.
func (p *Policy) Check(unsafePath string) error {
	_, _, err := p.resolve(unsafePath)
	return err
}

// resolve returns the allowed directory containing unsafePath and the path
// relative to it (cleaned, never empty, ".", or starting with "..").
func (p *Policy) resolve(unsafePath string) (dir, rel string, err error) {
	switch {
	case unsafePath == "":
		return "", "", notAllowed(unsafePath, "empty path")
	case strings.IndexByte(unsafePath, 0) >= 0:
		return "", "", notAllowed(unsafePath, "path contains a NUL byte")
	case !filepath.IsAbs(unsafePath):
		return "", "", notAllowed(unsafePath, "not an absolute path")
	}
	clean := filepath.Clean(unsafePath)
	isAllowDir := false
	var valid []string
	for _, d := range p.AllowDirs {
		if !filepath.IsAbs(d) {
			continue
		}
		d = filepath.Clean(d)
		valid = append(valid, d)
		if clean == d {
			isAllowDir = true
			continue
		}
		if r, ok := within(d, clean); ok {
			return d, r, nil
		}
	}
	if isAllowDir {
		return "", "", notAllowed(unsafePath, "is an allowed directory itself, not a path inside it")
	}
	if len(valid) == 0 {
		return "", "", notAllowed(unsafePath, "no allowed directory is configured")
	}
	return "", "", notAllowed(unsafePath,
		fmt.Sprintf("not inside an allowed directory (%s)", strings.Join(valid, ", ")))
}

// within returns path relative to dir if path is strictly below dir; both
// are clean and absolute.
func within(dir, path string) (string, bool) {
	if dir == "/" {
		return path[1:], path != "/"
	}
	if rest, ok := strings.CutPrefix(path, dir+"/"); ok && rest != "" {
		return rest, true
	}
	return "", false
}
