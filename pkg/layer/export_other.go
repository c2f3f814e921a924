//go:build !linux

package layer

import (
	"context"
	"errors"
	"fmt"
)

// errWriteUnsupported is returned by Write where it cannot read an overlay
// upper directory (overlayfs is Linux-only).
var errWriteUnsupported = fmt.Errorf("layer: Write is only supported on Linux: %w", errors.ErrUnsupported)

func writeUpper(context.Context, *Writer, string, *writeOptions) error { return errWriteUnsupported }
