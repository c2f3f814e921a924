// Package overlay finds the overlayfs mount behind a container's rootfs and
// returns its layers: the upper and work directories and the lower layers,
// as absolute host paths that stay valid after the rootfs is unmounted.
//
// It reads the mount table (/proc/self/mountinfo); the options there are the
// ones the mounter gave, so this package also undoes what the mounters do:
//
//   - containers/storage (podman, CRI-O), when the option string would not fit
//     in a page, chdirs into its overlay home and mounts with paths relative to
//     it (lowerdir=l/ABCD:l/EFGH,upperdir=<id>/diff,workdir=<id>/work); its
//     mountpoints are <home>/<id>/merged, so relative paths are resolved
//     against the grandparent of the mountpoint. Its lower layers are short
//     symlinks <home>/l/XXXX -> ../<layer>/diff, resolved to the layer's diff
//     directory here.
//   - containerd's overlay snapshotter always uses absolute paths.
//   - the new mount API (fsconfig) shows one lowerdir+= or datadir+= option per
//     layer instead of a colon-separated lowerdir=.
//
// Do not use it for fuse-overlayfs (rootless podman without native overlay):
// that is a different file system type and is reported as ErrNotOverlay.
//
// The mount table and the mounter are trusted: this package does no symlink
// confinement, it only reports what the kernel mounted.
package overlay

import "errors"

var (
	// ErrNotOverlay is wrapped when the file system mounted at the
	// mountpoint is not overlayfs; the message names the type found.
	ErrNotOverlay = errors.New("overlay: not an overlayfs mount")
	// ErrNotMounted is wrapped when nothing is mounted at the mountpoint.
	ErrNotMounted = errors.New("overlay: nothing mounted")
)

// FSType is the file system type of overlayfs in the mount table.
const FSType = "overlay"

// Mount is one overlayfs mount, as found in the mount table.
type Mount struct {
	// Mountpoint is the absolute, symlink-free path the overlay is mounted on.
	Mountpoint string
	// Upper and Work are the absolute upper and work directories, "" for a
	// read-only overlay made of lower layers only.
	Upper, Work string
	// Lowers are the absolute lower layers, topmost first.
	Lowers []string
	// DataDirs are the data-only lower layers (datadir+=, or the layers after
	// "::" in lowerdir=), which only hold the data of metacopy files that a
	// regular layer redirects to. Bottommost last, like Lowers.
	DataDirs []string
	// Options are all the super block options as the mount table shows them,
	// split at commas, undecoded.
	Options []string
	// UserXattr: overlay metadata lives in user.overlay.* xattrs instead of
	// trusted.overlay.* (unprivileged overlay, "userxattr").
	UserXattr bool
	// Metacopy: a file in the upper may be a metadata-only copy whose data
	// is in a lower layer ("metacopy=on").
	Metacopy bool
	// RedirectDir: renamed directories in the upper may carry redirect
	// xattrs that the kernel follows ("redirect_dir=on" or "follow", or
	// implied by metacopy=on). When the option is absent the kernel's
	// built-in default applies, which this package cannot see: a walker of
	// the upper should honour redirect xattrs whatever this field says.
	RedirectDir bool
}

// XattrPrefix returns the namespace prefix of the overlay's private xattrs:
// "user.overlay." with userxattr, "trusted.overlay." otherwise.
func (m *Mount) XattrPrefix() string {
	if m.UserXattr {
		return "user.overlay."
	}
	return "trusted.overlay."
}
