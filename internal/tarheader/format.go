// Package tarheader encodes and parses the tar headers of the common case
// (POSIX ustar blocks, optionally after one PAX extended header holding an
// mtime with nanoseconds and SCHILY.xattr records) directly, byte for byte
// as archive/tar does, and hands everything else to archive/tar.
//
// It exists for speed only: archive/tar's per-header format negotiation
// dominates the CPU of exporting and restoring many small files (see
// tests/bench/notes.md, "Where the targets hold"). Its output and its
// reading are defined as archive/tar's: the differential tests
// (TestAppend, TestReader, FuzzReader) compare the two on generated
// headers, real GNU tar and bsdtar streams, and truncated and corrupted
// copies of them. Do not use it where archive/tar's speed is enough.
package tarheader

// BlockSize is the size of a tar block: a header, or a unit of content
// padding.
const BlockSize = 512

// XattrPrefix is the PAX record prefix of an extended attribute
// ("SCHILY.xattr.user.x"), as GNU tar and archive/tar write them.
const XattrPrefix = "SCHILY.xattr."

// Padding is the number of zero bytes that follow n bytes of content to
// the end of their block.
func Padding(n int64) int64 { return -n & (BlockSize - 1) }

// Header block layout (POSIX ustar; archive/tar's format.go).
const (
	hdrName        = 0   // [100]
	hdrMode        = 100 // [8]
	hdrUID         = 108 // [8]
	hdrGID         = 116 // [8]
	hdrSize        = 124 // [12]
	hdrMtime       = 136 // [12]
	hdrChksum      = 148 // [8]
	hdrType        = 156 // [1]
	hdrLinkname    = 157 // [100]
	hdrMagic       = 257 // [6] "ustar\x00", then [2] version "00"
	hdrUname       = 265 // [32]
	hdrGname       = 297 // [32]
	hdrDevMajor    = 329 // [8]
	hdrDevMinor    = 337 // [8]
	hdrPrefix      = 345 // [155]
	hdrStarTrailer = 508 // [4] "tar\x00" in star's format

	// maxPAXData is archive/tar's maxSpecialFileSize.
	maxPAXData = 1 << 20
)
