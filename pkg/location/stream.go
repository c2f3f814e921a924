package location

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
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
	return &streamPending{name: s.name, w: bufio.NewWriterSize(s.w, bufSize)}, nil
}

// streamPending follows the Pending contract with the states of a
// filePending.
type streamPending struct {
	mu    sync.Mutex
	name  string
	w     *bufio.Writer
	state int
	err   error // of a failed Commit
}

func (p *streamPending) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != writing {
		return 0, p.closedErr()
	}
	n, err := p.w.Write(b)
	if err != nil {
		err = fmt.Errorf("write %s: %w", p.name, err)
	}
	return n, err
}

// ReadFrom hands r to w's ReadFrom once the buffer is flushed (an
// *os.File: splice or copy_file_range where the kernel can).
func (p *streamPending) ReadFrom(r io.Reader) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != writing {
		return 0, p.closedErr()
	}
	n, err := p.w.ReadFrom(r)
	if err != nil {
		err = fmt.Errorf("write %s: %w", p.name, err)
	}
	return n, err
}

func (p *streamPending) closedErr() error {
	switch p.state {
	case aborted:
		return ErrAborted
	case failed:
		return p.err
	}
	return fmt.Errorf("%s: %w", p.name, os.ErrClosed)
}

// Commit flushes the buffer. After a failed flush the reader holds a
// truncated snapshot, and Commit keeps returning that error.
func (p *streamPending) Commit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case committed:
		return nil
	case aborted, failed:
		return p.closedErr()
	}
	if err := p.w.Flush(); err != nil {
		p.state, p.err = failed, fmt.Errorf("write %s: %w", p.name, err)
		return p.err
	}
	p.state = committed
	return nil
}

// Abort stops writing: what is still buffered is dropped, what was written
// stays written. After Commit it does nothing.
func (p *streamPending) Abort() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == writing {
		p.state = aborted
		p.w.Reset(io.Discard)
	}
	return nil
}
