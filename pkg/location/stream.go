package location

import (
	"bufio"
	"context"
	"fmt"
	"io"
)

// NewStreamSink returns a Sink that writes a snapshot to w as it is
// produced: standard output, a pipe. name is what String says ("stdout").
// Unlike a file sink it cannot hide a partial snapshot from its reader:
// Abort cannot take back what was written already, so a reader sees a
// truncated snapshot, which every snapshot reader (ocisnap's, tar's)
// reports. Commit flushes what is buffered. Each Create starts a new
// Pending on the same w.
func NewStreamSink(w io.Writer, name string) Sink {
	return &streamSink{w: w, name: name}
}

type streamSink struct {
	w    io.Writer
	name string
}

func (s *streamSink) String() string { return s.name }

func (s *streamSink) Create(ctx context.Context) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &streamPending{pendingState: pendingState{name: s.name}, w: bufio.NewWriterSize(s.w, bufSize)}, nil
}

// streamPending follows the Pending contract with the states of a
// filePending.
type streamPending struct {
	pendingState
	w *bufio.Writer
}

func (p *streamPending) Write(b []byte) (int, error) {
	if err := p.lockWriting(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	n, err := p.w.Write(b)
	if err != nil {
		err = fmt.Errorf("write %s: %w", p.name, err)
	}
	return n, err
}

// ReadFrom hands r to w's ReadFrom once the buffer is flushed (an
// *os.File: splice or copy_file_range where the kernel can).
func (p *streamPending) ReadFrom(r io.Reader) (int64, error) {
	if err := p.lockWriting(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	n, err := p.w.ReadFrom(r)
	if err != nil {
		err = fmt.Errorf("write %s: %w", p.name, err)
	}
	return n, err
}

// Commit flushes the buffer. After a failed flush the reader holds a
// truncated snapshot, and Commit keeps returning that error.
func (p *streamPending) Commit() error {
	return p.finish(func() error {
		if err := p.w.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", p.name, err)
		}
		return nil
	})
}

// Abort stops writing: what is still buffered is dropped, what was written
// stays written. After Commit it does nothing.
func (p *streamPending) Abort() error {
	return p.cancel(func() error {
		p.w.Reset(io.Discard)
		return nil
	})
}
