//go:build !linux

package layer

import (
	"context"
	"io"
	"os"
)

func contentFile(io.Reader) (*os.File, context.Context, bool) { return nil, nil, false }
