//go:build !linux

package layer

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// errApplyUnsupported is returned by Apply where it has no confined
// implementation (openat2 is Linux-only).
var errApplyUnsupported = fmt.Errorf("layer: Apply is only supported on Linux: %w", errors.ErrUnsupported)

type applier struct{}

func newApplier(*os.File, *applyOptions) (*applier, error) { return nil, errApplyUnsupported }

func (*applier) apply(*Entry, io.Reader) error { return errApplyUnsupported }
func (*applier) finish() error                 { return errApplyUnsupported }
func (*applier) close()                        {}
