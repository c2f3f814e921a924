package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Apply applies the snapshot read from r (plain, gzip or zstd) onto the
// directory root and reports what it did. It is the restore half of the
// contract's "Applying a snapshot to a rootfs":
//
//   - a whiteout removes the path, a directory recursively; an absent path
//     is fine;
//   - an opaque directory loses every child it had before the snapshot,
//     whatever the order of the entries;
//   - any other entry creates its path or replaces what is there: a
//     directory over a directory keeps the directory and takes the new
//     metadata; anything else removes the old path first (a directory
//     recursively) and never writes through an existing file.
//
// Ownership (translated with WithIDMap), mode bits including
// setuid/setgid/sticky, xattrs and nanosecond times are applied; the
// overlay's own trusted.overlay.* and user.overlay.* xattrs never are.
// Directory times are set last, so adding children does not undo them.
// root may be a plain directory or a mounted overlay (a container's rootfs):
// removing and recreating a directory there makes overlayfs mark it opaque,
// and a removed lower path becomes a whiteout in the upper layer.
//
// # Threat model
//
// root is trusted: the caller opened it (O_DIRECTORY) and nothing else
// modifies the tree while Apply runs. Its contents may hold symlinks
// pointing anywhere (an image's own absolute symlinks, or ones the snapshot
// creates). r is hostile: any name, link target, header field or length.
//
// No write lands outside root. Where an extractor would do
// os.OpenFile(filepath.Join(root, name)) and follow whatever symlinks the
// tree holds, Apply checks names in Reader (no absolute names, no "..",
// no NUL), then opens each entry's parent directory with openat2(2)
// RESOLVE_BENEATH|RESOLVE_NO_XDEV|RESOLVE_NO_MAGICLINKS relative to root:
// a symlink in the tree that leads out of root (`evil -> /` followed by
// `evil/etc/passwd`, or `evil -> ../..`) fails the entry with
// ErrInsecurePath instead of being followed. Relative symlinks that stay
// inside root are followed; an absolute one is refused even if it names a
// path that exists in root (an overlay upper, and so a snapshot from
// Write, never has a path through a symlink). The change itself is one
// *at syscall on that directory and the last name, which is never
// followed if it is a symlink (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, O_EXCL
// creation after removal). Hard link targets are resolved the same way,
// and linkat does not follow a final symlink. This needs Linux 5.8
// (openat2, statx's mount id) and, to set owners, devices and trusted.*
// xattrs, root privileges.
//
// # Mounts inside the root
//
// No write, removal or traversal leaves root's own mount, whatever mounts
// root holds: a volume bind-mounted at /data, a tmpfs, a bind-mounted
// /etc/hosts. A path that crosses a mount point fails (RESOLVE_NO_XDEV);
// before a name is removed, replaced, or has its owner, mode, xattrs or
// times changed, its mount id (statx STATX_MNT_ID) is compared with
// root's, and a recursive removal (a whiteout of a directory, a
// directory replaced by a non-directory, an opaque directory's old
// children) checks every name before it descends or unlinks. So a
// whiteout of ./data, an entry ./data/planted, a directory entry ./data/
// (new metadata), an opaque ./data/ or a hard link into or out of ./data
// fails the restore with ErrCrossesMount, naming the entry, before
// anything of the mount is touched. The names are checked, not only the
// failures: from outside the mount namespace a mount belongs to, unlinking
// its mount point succeeds and detaches it.
//
// One entry is left under a mount instead: an empty regular file whose
// name is a mount point of a file. It is the stub an engine creates for a
// file it bind-mounts (/etc/hosts, /etc/hostname, /etc/resolv.conf,
// /run/.containerenv), which layers made by `podman commit` carry; in a
// container of such an image the engine's mount covers it just the same.
// Nothing is written, and the mount stays.
//
// That is what keeps a restore at the OCI createContainer stage safe (the
// hook then runs in the container's mount namespace, with the volumes
// mounted inside the rootfs), and the same rule holds at every stage: a
// caller at createRuntime opens root inside the container's mount
// namespace, so that the volumes are seen there too. Restore at
// createContainer stays supported on that ground; a snapshot that would
// change a volume's mount point is refused, never applied around it.
//
// Out of scope: a root that an attacker can modify concurrently (renaming
// a directory out of root, or mounting, between two entries); and hard
// links to outside inodes that root already holds (Apply never writes
// into an existing non-directory inode, it replaces it, but it can add a
// name for one).
//
// Apply stops at the first error and leaves what it had already applied in
// place: a failed restore makes the container fail to start.
func Apply(ctx context.Context, root *os.File, r io.Reader, opts ...ApplyOpt) (Stats, error) {
	o := defaultApplyOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return Stats{}, err
		}
	}
	if root == nil {
		return Stats{}, errors.New("apply: nil root")
	}
	rd, err := NewReader(r)
	if err != nil {
		return Stats{}, fmt.Errorf("apply: %w", err)
	}
	defer rd.Close()
	a, err := newApplier(root, &o)
	if err != nil {
		return Stats{}, fmt.Errorf("apply: %w", err)
	}
	defer a.close()
	return applyEntries(ctx, a, rd, &o)
}

// entryApplier is what the OS-specific code provides.
type entryApplier interface {
	// apply applies one entry; content is the entry's data.
	apply(e *Entry, content io.Reader) error
	// finish does the deferred work (directory times).
	finish() error
	close()
}

func applyEntries(ctx context.Context, a entryApplier, rd *Reader, o *applyOptions) (Stats, error) {
	var st Stats
	prog := progress{fn: o.progress}
	var skipped int64 // data of whiteout files, never written but read
	for {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("apply: %w", err)
		}
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("apply: %w", err)
		}
		name := applyEntryName(e)
		if st.Entries >= o.maxEntries {
			return st, fmt.Errorf("apply %q: %w: more than %d entries (max entries)", name, ErrLimitExceeded, o.maxEntries)
		}
		var size int64
		if e.Header != nil {
			size = e.Header.Size
		}
		if size > o.maxBytes-st.Bytes-skipped {
			return st, fmt.Errorf("apply %q: %w: more than %d bytes of content (max bytes)", name, ErrLimitExceeded, o.maxBytes)
		}
		if err := a.apply(e, rd); err != nil {
			return st, nameEntry(name, err)
		}
		st.Entries++
		if e.Header != nil && isRegularType(e.Header) && !e.Whiteout {
			st.Bytes += size
		} else {
			skipped += size // whiteout files' data: read, never written
		}
		prog.update(st)
	}
	if err := a.finish(); err != nil {
		return st, nameEntry("", err)
	}
	prog.done(st)
	return st, nil
}

// entryError is a failure that already names its entry: one from a file
// finished in parallel, found while the applier is at a later entry.
type entryError struct {
	name string
	err  error
}

func (e *entryError) Error() string { return fmt.Sprintf("apply %q: %v", e.name, e.err) }
func (e *entryError) Unwrap() error { return e.err }

// nameEntry names the entry err is about, unless err already does (a
// file finished in parallel fails while a later entry is being applied).
func nameEntry(name string, err error) error {
	if _, ok := err.(*entryError); ok {
		return err
	}
	if name == "" {
		return fmt.Errorf("apply: %w", err)
	}
	return fmt.Errorf("apply %q: %w", name, err)
}

// applyEntryName is the name errors use for e: its path as in the tar.
func applyEntryName(e *Entry) string {
	if e.Path == "" {
		return "./"
	}
	return "./" + e.Path
}

func isRegularType(h *tar.Header) bool {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return true
	}
	return false
}
