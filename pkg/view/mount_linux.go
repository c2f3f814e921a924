package view

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/mountns"
)

// viewAttrs are the attributes of every view mount.
const viewAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// ensurePrivateDir makes dir a mount with private propagation (a bind of
// itself, if it is not a mountpoint yet), as containers/storage does with
// its overlay directory: a view mounted under it then stays in the host's
// mount namespace instead of propagating to every peer and slave namespace
// of a shared parent (from which the host's unmount would not remove it
// once the view itself is made private). Concurrent hooks serialise on a
// lock of the directory.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create views directory: %w", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("views directory: %w", err)
	}
	lock, err := os.Open(real)
	if err != nil {
		return fmt.Errorf("views directory: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock views directory: %w", err)
	}
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (bool, bool) { return i.Mountpoint != real, false })
	if err != nil {
		return fmt.Errorf("views directory: read mount table: %w", err)
	}
	if len(infos) == 0 {
		if err := unix.Mount(real, real, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind views directory %s on itself: %w", real, err)
		}
	} else if top := infos[len(infos)-1]; !strings.Contains(top.Optional, "shared:") && !strings.Contains(top.Optional, "master:") {
		return nil
	}
	if err := unix.Mount("", real, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make views directory %s private: %w", real, err)
	}
	return nil
}

// mountImage mounts the container's image layers read-only on mp: a bind
// of the one lower layer, or an overlay of the lower layers (and data-only
// layers) with no upper.
func mountImage(recorded *Overlay, mp string) error {
	ov := *recorded
	ov.Lowers = unmappedLayers(ov.Lowers)
	ov.DataDirs = unmappedLayers(ov.DataDirs)
	if len(ov.Lowers) == 1 && len(ov.DataDirs) == 0 {
		lower, err := os.OpenFile(ov.Lowers[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("image layer: %w", err)
		}
		defer lower.Close()
		return bindOn(lower, mp)
	}
	c, err := newFSContext("overlay")
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.set("source", "ocisnap-view"); err != nil {
		return err
	}
	// One fsconfig per layer (lowerdir+, Linux 6.8) has no length limit and
	// no escaping; older kernels take the colon-separated list.
	if err := c.set("lowerdir+", ov.Lowers[0]); err == nil {
		for _, l := range ov.Lowers[1:] {
			if err := c.set("lowerdir+", l); err != nil {
				return err
			}
		}
		for _, d := range ov.DataDirs {
			if err := c.set("datadir+", d); err != nil {
				return err
			}
		}
	} else {
		list := escapeLowers(ov.Lowers)
		if len(ov.DataDirs) > 0 {
			list += "::" + escapeLowers(ov.DataDirs)
		}
		if err := c.set("lowerdir", list); err != nil {
			return err
		}
	}
	if ov.UserXattr {
		if err := c.set("userxattr", ""); err != nil {
			return err
		}
	}
	if slices.Contains(ov.Options, "metacopy=on") || len(ov.DataDirs) > 0 {
		if err := c.set("metacopy", "on"); err != nil {
			return err
		}
	}
	return c.mount(mp)
}

// mappedLayerRE matches a lower layer of a containers/storage container
// with an id mapping: <home>/<container layer>/mapped/<n>/l/<link>, a
// temporary idmapped mount of the layer <home>/l/<link> that the
// overlay keeps but that is detached once the rootfs is mounted. Compiled
// on first use, not at every hook's start-up.
var mappedLayerRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(/.*)/[^/]+/mapped/[0-9]+/l/([^/]+)$`)
})

// unmappedLayers replaces each recorded layer that no longer exists and is
// a containers/storage idmapped layer by the layer itself: the view shows
// the same content (with the host's ownership, read-only).
func unmappedLayers(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = d
		if _, err := os.Stat(d); err == nil {
			continue
		}
		if m := mappedLayerRE().FindStringSubmatch(d); m != nil {
			if real, err := filepath.EvalSymlinks(filepath.Join(m[1], "l", m[2])); err == nil {
				out[i] = real
			}
		}
	}
	return out
}

// escapeLowers joins layers for lowerdir=, escaping the separator.
func escapeLowers(dirs []string) string {
	r := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = r.Replace(d)
	}
	return strings.Join(out, ":")
}

// mountDir binds the policy-checked directory req.Source (inside a view
// directory, owned by root, not group/other-writable: policy.OpenViewDir)
// read-only on the view's mountpoint, from the descriptor the policy opened.
func mountDir(req *Request, st *State) error {
	d, err := req.Policy.OpenViewDir(req.Source)
	if err != nil {
		return fmt.Errorf("dir: %w", err)
	}
	defer d.Close()
	if p, err := fdPath(d); err == nil {
		st.Source = p
	}
	return bindOn(d, st.Mountpoint)
}

// mountFile attaches the policy-checked image req.Source (a regular file
// inside a view directory, owned by root, not group/other-writable, checked
// on this very descriptor: policy.OpenViewFile) to a read-only loop device
// and mounts it read-only on the view's mountpoint. st.Source becomes the
// image's real path, which Release checks the loop device's backing file
// against.
func mountFile(ctx context.Context, req *Request, st *State, save func() error) error {
	f, err := req.Policy.OpenViewFile(req.Source)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	defer f.Close()
	fstype, err := DetectFS(f)
	if err != nil {
		return fmt.Errorf("file %q: %w", req.Source, err)
	}
	if p, err := fdPath(f); err == nil {
		st.Source = p
	}
	loop, err := attachLoop(ctx, f, func(dev string) error {
		st.LoopDevice = dev
		return save()
	})
	if err != nil {
		return fmt.Errorf("file %q: %w", req.Source, err)
	}
	// The mount holds the device open; closing ours lets autoclear detach
	// it when the view is unmounted (or now, if the mount fails).
	defer loop.Close()
	c, err := newFSContext(fstype)
	if err != nil {
		return fmt.Errorf("file %q: %w", req.Source, err)
	}
	defer c.close()
	err = c.set("source", loop.Name())
	if err == nil {
		err = c.set("ro", "")
	}
	if err == nil && fstype == FSExt4 {
		// A read-only device cannot replay a journal.
		err = c.set("norecovery", "")
	}
	if err == nil {
		err = c.mount(st.Mountpoint)
	}
	if err != nil {
		return fmt.Errorf("file %q: mount as %s (corrupt or unsupported image?): %w", req.Source, fstype, err)
	}
	return nil
}

// bindOn binds src read-only on the directory mp.
func bindOn(src *os.File, mp string) error {
	tree, err := mountns.CloneReadOnly(src)
	if err != nil {
		return err
	}
	defer tree.Close()
	target, err := os.OpenFile(mp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer target.Close()
	return tree.Attach(target)
}

// fsContext is a file system context of the new mount API (fsopen), whose
// kernel log explains a failure better than mount(2)'s errno.
type fsContext struct {
	fd     int
	fstype string
}

func newFSContext(fstype string) (*fsContext, error) {
	fd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	return &fsContext{fd: fd, fstype: fstype}, nil
}

func (c *fsContext) close() { unix.Close(c.fd) }

// set sets a string option, or a flag when val is "".
func (c *fsContext) set(key, val string) error {
	var err error
	if val == "" {
		err = unix.FsconfigSetFlag(c.fd, key)
	} else {
		err = unix.FsconfigSetString(c.fd, key, val)
	}
	if err != nil {
		return c.wrap(fmt.Sprintf("option %s", key), err)
	}
	return nil
}

// mount creates the file system and mounts it read-only, nosuid, nodev on
// the directory mp.
func (c *fsContext) mount(mp string) error {
	if err := unix.FsconfigCreate(c.fd); err != nil {
		return c.wrap("create", err)
	}
	mfd, err := unix.Fsmount(c.fd, unix.FSMOUNT_CLOEXEC, viewAttrs)
	if err != nil {
		return c.wrap("fsmount", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, mp, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount %s view onto %s: %w", c.fstype, mp, err)
	}
	return nil
}

// wrap adds the kernel's messages for this context to err.
func (c *fsContext) wrap(op string, err error) error {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, rerr := unix.Read(c.fd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("mount %s: %s: %w (%s)", c.fstype, op, err, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("mount %s: %s: %w", c.fstype, op, err)
}
