package view

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrUnknownImage is wrapped when a file: view source holds no file system
// this package mounts (or is too short or corrupt to tell).
var ErrUnknownImage = errors.New("view: not an erofs, squashfs or ext4 image")

// Superblock magics, from the kernel's headers.
const (
	// erofsMagic is EROFS_SUPER_MAGIC_V1, little-endian at byte 1024
	// (EROFS_SUPER_OFFSET) (fs/erofs/erofs_fs.h).
	erofsMagic  = 0xE0F5E1E2
	erofsOffset = 1024
	// squashfsMagic is "hsqs" (SQUASHFS_MAGIC 0x73717368 little-endian) at
	// byte 0 (fs/squashfs/squashfs_fs.h).
	squashfsMagic = "hsqs"
	// ext4 (and ext2/3, which the ext4 driver mounts) keep the superblock at
	// byte 1024; s_magic 0xEF53 is at offset 56 in it (fs/ext4/ext4.h).
	extMagic  = 0xEF53
	extOffset = 1024 + 56
)

// File system types as mount(2) names them.
const (
	FSErofs    = "erofs"
	FSSquashfs = "squashfs"
	FSExt4     = "ext4"
)

// DetectFS returns the file system type of the image r holds, from its
// superblock magic, or an error wrapping ErrUnknownImage.
func DetectFS(r io.ReaderAt) (string, error) {
	var buf [extOffset + 2]byte
	n, err := r.ReadAt(buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read superblock: %w", err)
	}
	b := buf[:n]
	switch {
	case len(b) >= 4 && string(b[:4]) == squashfsMagic:
		return FSSquashfs, nil
	case len(b) >= erofsOffset+4 && binary.LittleEndian.Uint32(b[erofsOffset:]) == erofsMagic:
		return FSErofs, nil
	case len(b) >= extOffset+2 && binary.LittleEndian.Uint16(b[extOffset:]) == extMagic:
		return FSExt4, nil
	}
	return "", fmt.Errorf("%w (no known superblock magic in its first %d bytes)", ErrUnknownImage, n)
}
