package layer

// The readers an entry's content travels in between the export walk,
// Convert and the Writer; the Writer looks through them (contentFile) to
// copy a file's content file to file.

import (
	"context"
	"io"
)

// ctxReader fails reads once ctx is done, so a large file's copy stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// dataReader returns data, then end (io.EOF if nil).
type dataReader struct {
	data []byte
	end  error
}

func (r *dataReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		if r.end != nil {
			return 0, r.end
		}
		return 0, io.EOF
	}
	n := copy(b, r.data)
	r.data = r.data[n:]
	return n, nil
}
