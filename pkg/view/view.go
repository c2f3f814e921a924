// Package view prepares and releases read-only "boot views" for a
// container: a view of the container's own image layers, of a host
// directory or of a file system image, mounted on the host under a views
// directory, and files or directories of it bound read-only into the
// container.
//
// Threat model. The hook runs as root on the host; the view source, the
// bind sources and destinations come from annotations and are untrusted
// (named unsafe* here). A dir:/file: source is opened through the
// administrator's policy (package policy). A bind source is resolved inside
// the view, as if the view were the root (a symlink in the image to
// /etc/shadow means the view's /etc/shadow, never the host's). A bind
// destination is resolved beneath the container's rootfs and may not pass
// through a symlink that leads out of it (an absolute symlink or ".."
// above the rootfs): such a destination is refused, not reinterpreted.
// Mountpoints missing in the rootfs are created (and recorded as stubs, to
// be removed at release) only on the rootfs's own file system or on a
// tmpfs; never in a volume bound from the host. Release removes a stub
// only while it is empty: what the container wrote beside a bind
// destination (a file next to a bound kernel, in a directory the hook
// created) is the container's, kept and exported (README.md, "Boot
// views").
//
// Out of scope: the rootfs changing under the hook (the container's
// process has not started when the hook runs), and the lower layers of an
// image view (they belong to the container engine).
//
// Every step is recorded in a State before it is done (the intent: a
// mountpoint, a loop device, a stub) or after (a mount), and handed to a
// save callback that stores it (the hooks keep it in the container's state
// record), so that Release, run at poststop, by `ocisnap gc` after a crash,
// or by Prepare itself to roll back a failure, undoes exactly what was done.
package view

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/containerid"
	"github.com/ocisnap/ocisnap/pkg/mountns"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// Kind is where a view's content comes from.
type Kind string

// View kinds (docs/annotations.md, io.ocisnap.view).
const (
	// KindImage is the container's own image: an overlay of the rootfs
	// overlay's lower layers only, without its upper.
	KindImage Kind = "image"
	// KindDir is a directory inside an allowed directory, bound.
	KindDir Kind = "dir"
	// KindFile is an erofs, squashfs or ext4 image inside an allowed
	// directory, attached to a read-only loop device and mounted.
	KindFile Kind = "file"
)

var (
	// ErrNotInView is wrapped when a bind source does not exist in the view.
	ErrNotInView = errors.New("not found in view")
	// ErrEscapesRootfs is wrapped when a bind destination passes through a
	// symlink leading out of the container's rootfs.
	ErrEscapesRootfs = errors.New("passes through a symbolic link leading out of the container's rootfs")
	// ErrKindMismatch is wrapped when a directory would be bound on a
	// non-directory or the other way round.
	ErrKindMismatch = errors.New("file and directory mismatch")
	// ErrInUse is wrapped when the view's mountpoint already holds a
	// mount (a view of an earlier container with the same id that was never
	// released: `ocisnap gc` releases it).
	ErrInUse = errors.New("view mountpoint already in use")
)

// Bind is one source of the view bound on one destination in the
// container. Src "/" (or ".") binds the whole view.
type Bind struct {
	Src string // unsafe: a path inside the view
	Dst string // unsafe: an absolute path inside the container
}

// Request is what Prepare makes.
type Request struct {
	// ID is the container's id; it names the view's mountpoint.
	ID string
	// Dir is the views directory on the host (<state dir>/views). It is
	// made a private mount, so that views do not propagate to other mount
	// namespaces.
	Dir  string
	Kind Kind
	// Source is the dir: or file: path (unsafe), checked against Policy's
	// view directories (ViewDirs).
	Source string
	Policy *policy.Policy
	// Overlay is the container's rootfs overlay (KindImage): its lower
	// layers become the view.
	Overlay *Overlay
	Binds   []Bind
	// Rootfs is the container's rootfs as the container's mount namespace
	// sees it before pivot_root (the bundle's root.path).
	Rootfs string
	// Pid is the container's process: the binds are made in its mount
	// namespace. 0 makes them in the caller's mount namespace (a
	// createContainer hook runs inside the container's).
	Pid int
	// PidStart is Pid's start time (procstat.StartTime), checked
	// as the namespace is entered, so that a reused pid is never entered.
	PidStart uint64
}

// Overlay is the read-only part of the container's rootfs overlay, as
// found in mountinfo when the container was created: the layers an image
// view shows.
type Overlay struct {
	Lowers   []string // lower directories, uppermost first
	DataDirs []string // data-only lower layers (overlayfs datadir+)
	Options  []string // the overlay's mount options (metacopy=on is kept)
	// UserXattr says the overlay keeps its metadata in user.overlay.*
	// extended attributes (mounted with userxattr).
	UserXattr bool
}

// State is what Prepare did for one view, step by step, for Release to
// undo. The caller sets Kind and Source and stores the State whenever
// Prepare or Release calls save (the hooks keep it in the container's
// state record: docs/failure-behaviour.md); Mounted flags record progress,
// so that a release after a partial prepare undoes exactly what was done.
type State struct {
	Kind Kind
	// Source is the dir: or file: source as asked, then its real path on
	// the host once it is opened (Release checks a loop device's backing
	// file against it).
	Source string
	// Mountpoint is the view's mountpoint on the host, recorded before it
	// is created; "" once it is removed.
	Mountpoint string
	// LoopDevice is the file: view's loop device, recorded before it is
	// configured; "" once it is detached.
	LoopDevice string
	Binds      []BindState
	Mounted    bool // the view is mounted on Mountpoint
}

// BindState is one bind of a view as made: Request's Bind, the mountpoint
// stubs created for it and whether it is mounted.
type BindState struct {
	Src string
	Dst string
	// Stubs are the components of Dst that were missing in the rootfs and
	// were created for the bind, outermost first: directories, then the
	// mountpoint itself. Each is recorded before it is created; release
	// removes them deepest first, and only while they are empty.
	Stubs []Stub
	// LegacyStub is what state records of versions before Stubs hold: the
	// outermost component created, "" if none; the components below it down
	// to Dst were created too, of unknown kind. Release still removes them;
	// Prepare never sets it.
	LegacyStub string
	Mounted    bool
}

// Stub is one mountpoint component created in a container's rootfs.
type Stub struct {
	// Path is the component's container path, symbolic links resolved.
	Path string
	// Dir says it was created a directory, else an empty regular file.
	Dir bool
}

// Pending reports whether s records anything still to undo: a mount, a
// mountpoint, a loop device, a bind or a stub.
func (s *State) Pending() bool {
	if s.Mounted || s.Mountpoint != "" || s.LoopDevice != "" {
		return true
	}
	for _, b := range s.Binds {
		if b.Mounted || b.LegacyStub != "" || len(b.Stubs) > 0 {
			return true
		}
	}
	return false
}

// BindError is the error of one bind: Side says whether the source ("src")
// or the destination ("dst") is at fault.
type BindError struct {
	Index int // index in Request.Binds
	Bind  Bind
	Side  string
	Err   error
}

func (e *BindError) Error() string {
	p := e.Bind.Src
	if e.Side == "dst" {
		p = e.Bind.Dst
	}
	return fmt.Sprintf("%s %q: %v", e.Side, p, e.Err)
}

func (e *BindError) Unwrap() error { return e.Err }

// ReleaseOptions say what is left of the container when a view is released.
type ReleaseOptions struct {
	// Live says that the container's mount namespace still exists (its
	// process runs): the binds are unmounted in it, in the namespace of
	// Pid, or the caller's when Pid is 0. Without Live the binds went
	// with the namespace.
	// If the process turns out to be gone as its namespace is entered
	// (mountns.ErrGone), the binds went with it.
	Live     bool
	Pid      int
	PidStart uint64 // see Request.PidStart
	// Rootfs is the container's rootfs as that namespace sees it.
	Rootfs string
	// StubRoot is the directory the mountpoint stubs are removed from: the
	// container's rootfs while it is mounted, else its overlay upper
	// directory; "" leaves them (an export leaves out those still empty,
	// see Excludes).
	StubRoot string
}

func (r *Request) validate() error {
	if err := containerid.Validate(r.ID); err != nil {
		return err
	}
	if !filepath.IsAbs(r.Dir) {
		return fmt.Errorf("views directory %q is not absolute", r.Dir)
	}
	switch r.Kind {
	case KindImage:
		if r.Overlay == nil || len(r.Overlay.Lowers) == 0 {
			return errors.New("image view: the container's rootfs overlay has no lower layer recorded")
		}
	case KindDir, KindFile:
		if r.Policy == nil {
			return errors.New("no policy for a dir: or file: view")
		}
	default:
		return fmt.Errorf("unknown view kind %q", r.Kind)
	}
	if r.Pid < 0 || (len(r.Binds) > 0 && r.Rootfs == "") {
		return errors.New("binds need the container's pid and rootfs")
	}
	for i, b := range r.Binds {
		if b.Src == "" || strings.IndexByte(b.Src, 0) >= 0 {
			return &BindError{Index: i, Bind: b, Side: "src", Err: errors.New("not a path")}
		}
		if !filepath.IsAbs(b.Dst) || filepath.Clean(b.Dst) == "/" || strings.IndexByte(b.Dst, 0) >= 0 {
			return &BindError{Index: i, Bind: b, Side: "dst", Err: errors.New("want an absolute path other than /")}
		}
	}
	return nil
}

// inNamespace runs fn in the mount namespace of the process pid that
// started at start, or directly when pid is 0 (the caller is in the
// container's namespace). The error wraps mountns.ErrGone if that process
// is gone.
func inNamespace(pid int, start uint64, fn func() error) error {
	if pid == 0 {
		return fn()
	}
	return mountns.Do(mountns.Process{Pid: pid, Start: start}, fn)
}

// Mountpoint returns the host path a container's view is mounted on.
func Mountpoint(dir, id string) string { return filepath.Join(dir, id) }

// srcRel turns a bind source into a path relative to the view's root.
func srcRel(unsafeSrc string) string {
	rel := strings.TrimLeft(filepath.Clean("/"+unsafeSrc), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// dstRel turns a bind destination into a path relative to the rootfs.
func dstRel(unsafeDst string) string {
	return strings.TrimLeft(filepath.Clean(unsafeDst), "/")
}
