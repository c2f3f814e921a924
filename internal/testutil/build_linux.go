//go:build linux

package testutil

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BuildTree creates nodes under dir, in the order given: missing parents
// as directories (mode 0755), then each node with its type and mode (set
// explicitly, whatever the umask), its extended attributes (SCHILY.xattr.
// records), its owner if set with WithOwner, and its modification time if
// set with WithMTime. A Hardlink's target is a name under dir; a Whiteout
// is a char 0/0 device, as overlayfs leaves one in an upper directory.
// Names are relative to dir ("./a/", "a" and "a/" are the same). It fails
// t on any error.
func BuildTree(t testing.TB, dir string, nodes ...Node) {
	t.Helper()
	for _, n := range nodes {
		if err := buildNode(dir, n); err != nil {
			t.Fatalf("build tree %s: %q: %v", dir, n.Header.Name, err)
		}
	}
}

func treePath(dir, name string) string {
	return filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(name, "./")))
}

func buildNode(dir string, n Node) error {
	h := &n.Header
	p := treePath(dir, h.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	mode := uint32(h.Mode) & 0o7777
	var err error
	switch h.Typeflag {
	case tar.TypeDir:
		if err = os.Mkdir(p, 0o700); os.IsExist(err) {
			err = nil
		}
	case tar.TypeReg:
		err = os.WriteFile(p, []byte(n.Body), 0o600)
	case tar.TypeSymlink:
		err = os.Symlink(h.Linkname, p)
	case tar.TypeLink:
		err = os.Link(treePath(dir, h.Linkname), p)
	case tar.TypeChar:
		err = unix.Mknod(p, unix.S_IFCHR|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
	case tar.TypeBlock:
		err = unix.Mknod(p, unix.S_IFBLK|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
	case tar.TypeFifo:
		err = unix.Mkfifo(p, mode)
	default:
		return &os.PathError{Op: "build", Path: p, Err: unix.EINVAL}
	}
	if err != nil {
		return err
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
				return &os.PathError{Op: "setxattr " + name, Path: p, Err: err}
			}
		}
	}
	if n.owned {
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeSymlink, tar.TypeLink:
	default:
		// After the chown, which clears setuid and setgid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	if n.timed {
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimes", Path: p, Err: err}
		}
	}
	return nil
}
