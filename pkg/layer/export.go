package layer

import (
	"context"
	"fmt"
	"io"
)

// Write streams the overlay upper directory upper out to w as a snapshot,
// in a deterministic order: depth first, each directory's entries sorted
// bytewise, the root first as "./".
//
// It reads the upper directory itself, not the merged view, so it works
// after the overlay has been unmounted. It translates what overlayfs
// leaves in an upper (Documentation/filesystems/overlayfs.rst):
//
//   - whiteouts (char 0/0 devices, also hard links to the kernel's shared
//     whiteout, and zero-size files with the overlay.whiteout xattr) become
//     the format's whiteouts;
//   - directories with overlay.opaque=y become opaque directories;
//   - metacopy files (overlay.metacopy) are exported with the upper's
//     metadata and the data of the lower file they stand for;
//   - redirected directories (overlay.redirect, a renamed lower directory)
//     are exported whole: opaque, with the merged content of the lower
//     origin and the upper, so they do not depend on the image having the
//     origin; the origin itself is whited out by the whiteout overlayfs
//     left at the old name;
//   - overlay.* xattrs are never exported; all other xattrs are.
//
// Regular files with several links are written once, later paths as hard
// links to the first. Sockets are skipped. The upper directory and the
// lower directories are trusted (the runtime's); the container must be
// stopped, or the snapshot is not a consistent one.
//
// Write stops at the first error, which names the file ("export
// \"/etc/app.conf\": ..."); what it has written to w by then is not a
// valid snapshot. With WithMaxExportBytes, a file that would pass the
// limit fails it with ErrLimitExceeded. When compressing, Write closes the compressor but never
// w.
func Write(ctx context.Context, w io.Writer, upper string, opts ...WriteOpt) (Stats, error) {
	o := defaultWriteOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt.applyWrite(&o); err != nil {
			return Stats{}, err
		}
	}
	st, err := encode(w, o.format, o.compression, func(tw *Writer) error {
		tw.maxBytes = o.maxBytes
		return writeUpper(ctx, tw, upper, &o)
	})
	if o.progress != nil && err == nil {
		o.progress(st)
	}
	return st, err
}

// exportError names the container path of a file that failed.
func exportError(rel string, err error) error {
	return fmt.Errorf("export %q: %w", "/"+rel, err)
}
