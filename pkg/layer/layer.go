// Package layer reads and writes ocisnap snapshots: tar streams (POSIX/PAX)
// of a container's changes relative to its image.
//
// Two whiteout formats are supported, both on read and on write:
//
//   - FormatOverlay (the default, what `runsc tar rootfs-upper` writes): a
//     deleted path is a character device 0/0; a directory whose lower contents
//     are hidden carries the PAX record SCHILY.xattr.trusted.overlay.opaque=y.
//   - FormatOCI (an OCI image-spec layer,
//     https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts):
//     a deleted path is an empty file ".wh.<name>"; an opaque directory holds
//     a ".wh..wh..opq" entry.
//
// Apply streams a snapshot onto a root directory, confining every write to
// it. Write streams an overlay upper directory out as a snapshot in a
// deterministic order. Neither holds a whole file or the whole tar in memory.
//
// The root handed to Apply is trusted (the administrator's or the runtime's);
// the tar stream is not: every entry name, link target and header field is
// hostile until checked.
//
// Files by concern: layer.go (formats, constants, errors), entry.go,
// idmap.go; decode.go (Reader: tar to Entries) and encode.go (Writer:
// Entries to tar), both over internal/tarheader; compression.go;
// convert.go (Convert: one format to the other); apply*.go (Apply: the
// applier, path resolution, metadata, whiteouts, the parallel file pool,
// options); export*.go (Write: the walk of the upper, the lookup through
// the lowers, the staged pipe, options); content*.go (the readers an
// entry's content travels in); parallel_linux.go and progress.go (what
// Apply and Write share).
package layer

import (
	"errors"
	"fmt"

	"github.com/ocisnap/ocisnap/internal/tarheader"
)

// Format is a whiteout format.
type Format string

const (
	// FormatOverlay writes whiteouts as char 0/0 devices and opaque
	// directories as the trusted.overlay.opaque=y xattr (gVisor compatible).
	FormatOverlay Format = "overlay"
	// FormatOCI writes whiteouts as .wh.<name> files and opaque directories
	// as a .wh..wh..opq entry.
	FormatOCI Format = "oci"
)

// ParseFormat parses a format name; the empty string means FormatOverlay.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatOverlay:
		return FormatOverlay, nil
	case FormatOCI:
		return FormatOCI, nil
	}
	return "", fmt.Errorf("%w: %q (want %q or %q)", ErrUnknownFormat, s, FormatOverlay, FormatOCI)
}

// Compression is the compression of a snapshot stream.
type Compression string

const (
	CompressionNone Compression = "none"
	CompressionGzip Compression = "gzip"
	CompressionZstd Compression = "zstd"
)

// ParseCompression parses a compression name; "" means CompressionNone.
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", CompressionNone:
		return CompressionNone, nil
	case CompressionGzip, CompressionZstd:
		return Compression(s), nil
	}
	return "", fmt.Errorf("%w: %q (want none, gzip or zstd)", ErrUnknownCompression, s)
}

// OCI whiteout names (image-spec layer.md "Whiteouts").
const (
	WhiteoutPrefix = ".wh."
	WhiteoutOpaque = ".wh..wh..opq"
)

// Overlay xattrs (Documentation/filesystems/overlayfs.rst). The "user." forms
// are used by unprivileged (userxattr) mounts.
const (
	XattrOpaque         = "trusted.overlay.opaque"
	XattrOpaqueUser     = "user.overlay.opaque"
	XattrWhiteout       = "trusted.overlay.whiteout"
	XattrWhiteoutUser   = "user.overlay.whiteout"
	XattrMetacopy       = "trusted.overlay.metacopy"
	XattrMetacopyUser   = "user.overlay.metacopy"
	XattrRedirect       = "trusted.overlay.redirect"
	XattrRedirectUser   = "user.overlay.redirect"
	paxSchilyXattr      = tarheader.XattrPrefix
	overlayXattrPrefix  = "trusted.overlay."
	overlayUserXattrPfx = "user.overlay."
)

// Sentinel errors; check them with errors.Is.
var (
	ErrUnknownFormat      = errors.New("layer: unknown format")
	ErrUnknownCompression = errors.New("layer: unknown compression")
	ErrInsecurePath       = errors.New("layer: insecure path")
	ErrCrossesMount       = errors.New("layer: crosses into another mount") // a restore would leave the root's mount (see Apply)
	ErrDeviceNotAllowed   = errors.New("layer: device node not allowed")
	ErrLimitExceeded      = errors.New("layer: limit exceeded")
	ErrTruncated          = errors.New("layer: truncated snapshot")
	ErrTrailingData       = errors.New("layer: data after end of archive")
	ErrUnmappedID         = errors.New("layer: id not mapped")
	ErrUnsupportedEntry   = errors.New("layer: unsupported entry type")
)

// Stats counts what an Apply or Write did.
type Stats struct {
	Entries int64 // tar entries read or written
	Bytes   int64 // regular file content bytes
}
