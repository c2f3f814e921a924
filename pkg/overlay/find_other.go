//go:build !linux

package overlay

import (
	"errors"
	"fmt"
	"io"
)

// Find is only implemented on Linux.
func Find(mountpoint string) (*Mount, error) {
	return nil, fmt.Errorf("overlay: find %q: %w", mountpoint, errors.ErrUnsupported)
}

// FindFromReader is only implemented on Linux.
func FindFromReader(r io.Reader, mountpoint string) (*Mount, error) {
	return nil, fmt.Errorf("overlay: find %q: %w", mountpoint, errors.ErrUnsupported)
}
