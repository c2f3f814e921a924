package location

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
)

// teeStream carries the layer an export writes into its spool entry to the
// registry at the same time: each write is queued (a bounded queue of
// teeDepth buffers, so a slow registry slows the writer down but memory
// stays bounded) for the upload, which streams it as one chunked PATCH and
// commits the blob with the digest known at the end. The spool copy is the
// truth: once the upload has ended (failed) every write goes to the spool
// copy only, and never fails because of the network.
type teeStream struct {
	ch      chan []byte
	ended   chan struct{} // closed when the upload returned
	err     error         // of the upload, set before ended is closed
	aborted chan struct{} // closed by abort: the upload fails
	abortMu sync.Once
	doneMu  sync.Once
	cur     []byte // what is left of buf to read
	buf     []byte // the queued buffer being read, back to free once read
	free    chan []byte
	opened  atomic.Bool

	// budget, when positive, bounds the time Write may wait for the upload
	// in all (waited so far): past it, onTimeout is called and the upload
	// aborted, and the rest goes to the spool copy only. Only the writer
	// touches these.
	budget    time.Duration
	waited    time.Duration
	onTimeout func()

	mu   sync.Mutex
	dgst digest.Digest // known once the writer is done
	size int64
	mt   string
}

// teeDepth bounds the bytes in flight to teeDepth buffers of the writer's
// (bufSize) each.
const teeDepth = 2

var errTeeAborted = errors.New("the export was aborted")

func newTeeStream(mediaType string) *teeStream {
	return &teeStream{ch: make(chan []byte, teeDepth), free: make(chan []byte, teeDepth+1),
		ended: make(chan struct{}), aborted: make(chan struct{}), mt: mediaType}
}

// Write queues a copy of b for the upload, unless the upload has ended. It
// never fails.
func (s *teeStream) Write(b []byte) (int, error) {
	select {
	case <-s.ended:
		return len(b), nil
	default:
	}
	var c []byte
	select {
	case c = <-s.free: // a buffer the upload has read: no garbage per write
	default:
	}
	c = append(c[:0], b...)
	select {
	case s.ch <- c:
		return len(b), nil
	case <-s.ended:
		return len(b), nil
	default: // the queue is full: the registry reads slower than we write
	}
	start := time.Now()
	var expired <-chan time.Time
	if s.budget > 0 {
		t := time.NewTimer(max(s.budget-s.waited, 0))
		defer t.Stop()
		expired = t.C
	}
	select {
	case s.ch <- c:
	case <-s.ended:
	case <-expired:
		s.abort()
		if s.onTimeout != nil {
			s.onTimeout()
		}
	}
	s.waited += time.Since(start)
	return len(b), nil
}

// done ends the stream: the upload reads to its end and commits the blob as
// d (size bytes). Called once, after the last Write.
func (s *teeStream) done(d digest.Digest, size int64) {
	s.doneMu.Do(func() {
		s.mu.Lock()
		s.dgst, s.size = d, size
		s.mu.Unlock()
		close(s.ch)
	})
}

// abort makes the upload fail (the blob is never committed).
func (s *teeStream) abort() { s.abortMu.Do(func() { close(s.aborted) }) }

// end records the upload's result (its goroutine, once).
func (s *teeStream) end(err error) {
	s.err = err
	close(s.ended)
}

// wait waits for the upload and returns its error.
func (s *teeStream) wait() error {
	<-s.ended
	return s.err
}

// Read is the upload's side.
func (s *teeStream) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.buf != nil {
			select {
			case s.free <- s.buf:
			default:
			}
			s.buf = nil
		}
		select {
		case c, ok := <-s.ch:
			if !ok {
				return 0, io.EOF
			}
			s.cur, s.buf = c, c
		case <-s.aborted:
			return 0, errTeeAborted
		}
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

// teeLayer is the stream as go-containerregistry's v1.Layer: its digest is
// unknown until the writer is done (stream.ErrNotComputed: any other error
// fails remote.WriteLayer at once), which makes remote.WriteLayer stream
// it (POST, PATCH of the whole body, PUT ?digest= at the end) instead of
// asking first whether the registry has it. It can be read once: a retry
// after it was read fails.
type teeLayer struct{ s *teeStream }

func (l teeLayer) Digest() (v1.Hash, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.dgst == "" {
		return v1.Hash{}, fmt.Errorf("layer digest: %w", stream.ErrNotComputed)
	}
	return v1.NewHash(l.s.dgst.String())
}
func (l teeLayer) DiffID() (v1.Hash, error) { return l.Digest() }
func (l teeLayer) Compressed() (io.ReadCloser, error) {
	if l.s.opened.Swap(true) {
		return nil, fmt.Errorf("streamed layer: already read once, cannot be sent again")
	}
	return io.NopCloser(l.s), nil
}
func (l teeLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l teeLayer) Size() (int64, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.dgst == "" {
		return 0, fmt.Errorf("layer size: %w", stream.ErrNotComputed)
	}
	return l.s.size, nil
}
func (l teeLayer) MediaType() (types.MediaType, error) { return types.MediaType(l.s.mt), nil }
