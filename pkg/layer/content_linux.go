//go:build linux

package layer

import (
	"context"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// contentFile returns a file of its own on the content's descriptor, if the
// content is a file (an fdReader, also under a ctxReader), and the context
// that may stop the copy.
func contentFile(r io.Reader) (*os.File, context.Context, bool) {
	ctx := context.Background()
	if cr, ok := r.(ctxReader); ok {
		ctx, r = cr.ctx, cr.r
	}
	fr, ok := r.(fdReader)
	if !ok {
		return nil, nil, false
	}
	fd, err := unix.FcntlInt(uintptr(fr), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, false
	}
	return os.NewFile(uintptr(fd), "content"), ctx, true
}

// fdReader reads a file descriptor the caller owns.
type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}
