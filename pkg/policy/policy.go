// Package policy decides which host paths a hook request may touch, and
// resolves such a path into an open handle that cannot escape the
// directories the administrator allowed.
//
// Threat model. The hook runs as root on the host, but the paths it is asked
// to read or write come from annotations, written by whoever creates the
// container (a Kubernetes user, a podman user): they are untrusted, and are
// named unsafePath here. The configured directories and their ancestors
// belong to the administrator and are trusted: a symlink in "/var/lib" or in
// a configured directory's own path is followed.
//
// Directories have roles (README.md, "Security model"). Snapshots — restore
// sources and export destinations — live in Policy.AllowDirs (--allow-dir);
// dir:/file: view sources, which the host kernel mounts, live in
// Policy.ViewDirs (--allow-view-dir). The two never overlap (Validate), a
// snapshot path inside a view directory is refused, and a view source must
// be inside a view directory: so an annotation author can neither make root
// mount a snapshot tar they wrote (a tar can hold a valid ext4 or erofs
// superblock) nor export over an administrator's image. A file: image must
// moreover be a regular file owned by root (by the hook's own uid when it
// runs rootless) and writable by nobody else, and a dir: source a directory
// with the same owner and mode rule, checked on the opened descriptor.
//
// A path is accepted only if it is absolute and, after filepath.Clean, lies
// strictly inside one of the directories of its role (the directory itself
// is never a valid file). The check is lexical; the path is then opened
// relative to that directory with openat2(2) RESOLVE_BENEATH, which resolves
// every component without following a symlink (or "..") out of the
// directory, and refuses absolute symlinks: someone who can write inside a
// directory and swaps components for symlinks while the hook runs still
// cannot make it open a file outside. Such an escape (EXDEV) is a refusal
// wrapping ErrNotAllowed. Non-regular files are refused (a FIFO would block
// the hook, a device node would be read as a snapshot).
//
// Out of scope: bind mounts and other mounts inside a configured directory
// (the resolution crosses them; only the administrator can create them), and
// hard links to outside files placed inside a configured directory (the
// kernel's fs.protected_hardlinks=1 keeps unprivileged users from linking
// files they do not own; keep the directories writable by root only, as the
// defaults /var/lib/ocisnap and /var/lib/ocisnap-views with mode 0700 are).
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
// to when the administrator names none (README.md, "Administrator flags").
const DefaultAllowDir = "/var/lib/ocisnap"

// DefaultViewDir is the directory dir:/file: view sources may come from
// when the administrator names none. `make install` and the packages create
// it with mode 0700; the administrator puts view images there.
const DefaultViewDir = "/var/lib/ocisnap-views"

// Default restore limits. A container's writable layer is normally far
// below both; they bound what a hostile snapshot can do to the host's disk
// and inode table, not what a legitimate one needs.
const (
	DefaultMaxBytes   int64 = 64 << 30 // 64 GiB of file content
	DefaultMaxEntries int64 = 2_000_000
	// DefaultMaxExportBytes bounds what one export writes (file content):
	// a runaway container must not fill the snapshot directory's disk.
	DefaultMaxExportBytes int64 = 64 << 30
)

// ErrNotAllowed is wrapped by every error that refuses a path by policy
// (as opposed to an I/O error on an allowed path).
var ErrNotAllowed = errors.New("policy: path not allowed")

// ErrOverlap is wrapped by Validate's error for a view directory and an
// allowed directory that are the same or one inside the other.
var ErrOverlap = errors.New("policy: view and snapshot directories overlap")

// Policy is the administrator's policy, set by hook flags.
type Policy struct {
	// AllowDirs are absolute directories that restore sources and export
	// destinations must lie inside (--allow-dir). Empty allows nothing.
	// An entry holding NamespacePlaceholder is a template that allows
	// nothing until Scoped replaces it with a container's namespace.
	AllowDirs []string
	// ViewDirs are absolute directories that dir:/file: view sources must
	// lie inside (--allow-view-dir). Empty allows no such view. They must
	// not overlap AllowDirs (Validate).
	ViewDirs []string
	// MaxBytes and MaxEntries limit what one restore may write (file
	// content bytes, tar entries); zero or negative means no limit.
	MaxBytes, MaxEntries int64
	// MaxExportBytes limits the file content bytes one export may write
	// (--max-export-bytes); zero or negative means no limit. An export
	// over it fails and the previous snapshot stays.
	MaxExportBytes int64
	// AllowDevices lets a restore create device nodes.
	AllowDevices bool
	// GVisorCompat honours gVisor's dev.gvisor.tar.rootfs.upper annotation.
	GVisorCompat bool
	// AllowRegistries are the registry repository prefixes docker://
	// locations must lie under (--allow-registry; CheckRegistry). Empty
	// allows no registry.
	AllowRegistries []string
}

// Default returns the policy with no flags given: DefaultAllowDir,
// DefaultViewDir, the default limits, no devices, no gVisor compatibility.
func Default() Policy {
	return Policy{
		AllowDirs:  []string{DefaultAllowDir},
		ViewDirs:   []string{DefaultViewDir},
		MaxBytes:   DefaultMaxBytes,
		MaxEntries: DefaultMaxEntries,

		MaxExportBytes: DefaultMaxExportBytes,
	}
}

// Validate reports a configuration error: a directory that is not an
// absolute path (such entries are ignored by the checks, never trusted), or
// a view directory and an allowed directory that overlap (equal, or one
// inside the other), compared after filepath.Clean and, for what exists,
// after resolving symlinks. The overlap error wraps ErrOverlap and names
// both directories. Call it once at startup: the checks of each path assume
// a valid policy (and refuse a snapshot path inside a view directory anyway).
func (p *Policy) Validate() error {
	for _, d := range p.AllowDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("policy: allowed directory %q is not an absolute path", d)
		}
	}
	for _, d := range p.ViewDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("policy: view directory %q is not an absolute path", d)
		}
		if HasNamespace(d) {
			return fmt.Errorf("policy: view directory %q: %s is only replaced in --allow-dir and --allow-registry values", d, NamespacePlaceholder)
		}
	}
	if err := p.validateRegistries(); err != nil {
		return err
	}
	for _, v := range p.ViewDirs {
		for _, a := range p.AllowDirs {
			// A template's tenants all live below its prefix: compare that.
			if err := checkApart(v, a, TemplatePrefix(a)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkApart returns an ErrOverlap error if the view directory v and the
// allowed directory a (compared as ac: a itself, or the prefix of a
// {namespace} template) overlap, lexically or once symlinks are resolved.
func checkApart(v, a, ac string) error {
	cv, ca := filepath.Clean(v), filepath.Clean(ac)
	rv, ra := realPath(cv), realPath(ca)
	how := ""
	switch {
	case overlap(cv, ca):
	case overlap(rv, ra):
		how = fmt.Sprintf(" (resolved: %s and %s)", rv, ra)
	default:
		return nil
	}
	return fmt.Errorf("view directory %q (--allow-view-dir) and allowed directory %q (--allow-dir) overlap%s: "+
		"keep view images and snapshots in separate directories, neither inside the other: %w", v, a, how, ErrOverlap)
}

// overlap reports whether clean absolute paths a and b are equal or one is
// inside the other.
func overlap(a, b string) bool {
	_, in1 := within(a, b)
	_, in2 := within(b, a)
	return a == b || in1 || in2
}

// realPath resolves the symlinks of the longest existing prefix of the
// clean absolute path p and appends the rest: a directory not created yet
// below a symlinked one still compares by where it will be.
func realPath(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
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

// role is what a path is for; each role has its own directories.
type role int

const (
	roleSnapshot role = iota // restore source, export destination: AllowDirs
	roleView                 // dir:/file: view source: ViewDirs
)

// Check reports whether unsafePath is lexically allowed as a snapshot (a
// restore source or an export destination): absolute, strictly inside an
// allowed directory and not inside a view directory. It touches no file;
// use it to refuse early (at create time) what the Open methods would
// refuse later.
func (p *Policy) Check(unsafePath string) error {
	_, _, err := p.resolve(unsafePath, roleSnapshot)
	return err
}

// CheckView is Check for a dir:/file: view source: absolute, strictly
// inside a view directory and not inside an allowed (snapshot) directory.
func (p *Policy) CheckView(unsafePath string) error {
	_, _, err := p.resolve(unsafePath, roleView)
	return err
}

// resolve returns the directory of role r containing unsafePath and the
// path relative to it (cleaned, never empty, ".", or starting with "..").
func (p *Policy) resolve(unsafePath string, r role) (dir, rel string, err error) {
	switch {
	case unsafePath == "":
		return "", "", notAllowed(unsafePath, "empty path")
	case strings.IndexByte(unsafePath, 0) >= 0:
		return "", "", notAllowed(unsafePath, "path contains a NUL byte")
	case !filepath.IsAbs(unsafePath):
		return "", "", notAllowed(unsafePath, "not an absolute path")
	}
	clean := filepath.Clean(unsafePath)
	dirs, others := p.AllowDirs, p.ViewDirs
	what, none := "an allowed directory", "no allowed directory is configured"
	otherFmt := "inside the view directory %s: snapshots are never read from or written to a view directory"
	if r == roleView {
		dirs, others = p.ViewDirs, p.AllowDirs
		what, none = "a view directory", "no view directory is configured (--allow-view-dir)"
		otherFmt = "inside the snapshot directory %s: view sources must be in a view directory (--allow-view-dir)"
	}
	// The other role's directories first: with overlapping flags (which
	// Validate refuses) a path in both is still refused.
	for _, d := range others {
		if !filepath.IsAbs(d) {
			continue
		}
		d = TemplatePrefix(d)
		if _, in := within(d, clean); in || clean == d {
			return "", "", notAllowed(unsafePath, fmt.Sprintf(otherFmt, d))
		}
	}
	isDir := false
	var valid []string
	for _, d := range dirs {
		// A {namespace} template allows nothing until Scoped fills it in.
		if !filepath.IsAbs(d) || HasNamespace(d) {
			continue
		}
		d = filepath.Clean(d)
		valid = append(valid, d)
		if clean == d {
			isDir = true
			continue
		}
		if r, ok := within(d, clean); ok {
			return d, r, nil
		}
	}
	if isDir {
		return "", "", notAllowed(unsafePath, "is "+what+" itself, not a path inside it")
	}
	if len(valid) == 0 {
		return "", "", notAllowed(unsafePath, none)
	}
	return "", "", notAllowed(unsafePath,
		fmt.Sprintf("not inside %s (%s)", what, strings.Join(valid, ", ")))
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
