//go:build linux

package layer

// Write runs in three stages when there is more than one P: the walker
// (directory reads, stats, xattrs by name, headers) runs ahead in its own
// goroutine; a reader goroutine opens, reads into memory and closes the
// small regular files the walker found; the caller's goroutine encodes the
// entries and writes the tar stream, in the walker's order. The output is
// byte for byte the serial one, and an error stops the export where the
// serial walk would have stopped: it travels down the queue behind the
// entries before it.
//
// Why: exporting a small file is a few system calls on the upper plus the
// tar encoding and the write of the stream; the stages overlap them (see
// tests/bench/notes.md, "Where the targets hold").

import (
	"errors"
	"io"
	"math"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Pipe bounds: at most exportArenas arenas of exportArenaSize hold the
// content read ahead (8 MiB), and at most exportQueue batches of
// exportBatch entries wait. Files over exportSmallFile are read by the
// writing stage, through a duplicated descriptor: their cost is the copy,
// which reading ahead does not shorten (tests/bench/notes.md, "What was
// tried and not kept"). Entries travel in batches so
// that the stages do not wake each other for every file.
const (
	exportArenaSize = 1 << 20
	exportArenas    = 8
	exportBatch     = 64
	exportQueue     = 16
	exportSmallFile = 256 << 10
)

// errPipeStopped unwinds the walker once the writing stage has failed.
var errPipeStopped = errors.New("layer: export stopped")

type exportItem struct {
	rel string
	e   *Entry
	// A small file for the reader stage to read into data: name in dir.
	dir   *dirRef
	name  string
	fd    int          // content to read (a large file), owned; -1: none
	r     io.Reader    // content to read, not a descriptor
	data  []byte       // content read already
	rerr  error        // what reading data ended with, if it fell short
	arena *exportArena // holds data
	err   error        // the walker failed: the export stops here
}

type exportArena struct {
	buf  []byte
	uses atomic.Int32
}

type exportPipe struct {
	toRead chan []exportItem // walker -> reader stage
	items  chan []exportItem // reader stage -> writer
	batch  []exportItem      // the walker's, not sent yet
	stop   chan struct{}
	free   chan *exportArena
	made   int
	arena  *exportArena // the walker's current arena
	walked chan struct{}
}

// newExportPipe returns a pipe, or nil where the stages cannot overlap (a
// single P).
func newExportPipe() *exportPipe {
	if goroutines(math.MaxInt) < 2 {
		return nil
	}
	return &exportPipe{
		toRead: make(chan []exportItem, exportQueue),
		items:  make(chan []exportItem, exportQueue),
		stop:   make(chan struct{}),
		free:   make(chan *exportArena, exportArenas),
		walked: make(chan struct{}),
	}
}

// send queues an item; it fails once the writing stage has stopped, and
// then releases what the item holds.
func (p *exportPipe) send(it exportItem) error {
	p.batch = append(p.batch, it)
	if len(p.batch) < exportBatch && it.fd < 0 && it.r == nil {
		return nil
	}
	return p.flush()
}

func (p *exportPipe) flush() error {
	if len(p.batch) == 0 {
		return nil
	}
	b := p.batch
	p.batch = make([]exportItem, 0, exportBatch)
	select {
	case p.toRead <- b:
		return nil
	case <-p.stop:
		for i := range b {
			p.discard(&b[i])
		}
		return errPipeStopped
	}
}

// reserve returns n bytes of arena, and the arena, with a use for the item.
func (p *exportPipe) reserve(n int) ([]byte, *exportArena) {
	a := p.arena
	if a != nil && len(a.buf)+n > cap(a.buf) {
		p.release(a)
		a, p.arena = nil, nil
	}
	if a == nil {
		select {
		case a = <-p.free:
		default:
			if p.made < exportArenas {
				p.made++
				a = &exportArena{buf: make([]byte, 0, exportArenaSize)}
			} else {
				select {
				case a = <-p.free:
				case <-p.stop:
					// Nothing will come back; read into a buffer of its own.
					a = &exportArena{buf: make([]byte, 0, max(n, 1))}
				}
			}
		}
		a.buf = a.buf[:0]
		a.uses.Store(1)
		p.arena = a
	}
	k := len(a.buf)
	a.buf = a.buf[:k+n]
	a.uses.Add(1)
	return a.buf[k : k+n : k+n], a
}

func (p *exportPipe) release(a *exportArena) {
	if a != nil && a.uses.Add(-1) == 0 {
		select {
		case p.free <- a:
		default:
		}
	}
}

func (p *exportPipe) discard(it *exportItem) {
	if it.fd >= 0 {
		unix.Close(it.fd)
		it.fd = -1
	}
	if it.dir != nil {
		it.dir.release()
		it.dir = nil
	}
	p.release(it.arena)
	it.arena = nil
}

// queue is the walker's put: the entry, with its content read into memory
// if small, or a descriptor of its own if large.
func (p *exportPipe) queue(rel string, e *Entry, content io.Reader) error {
	it := exportItem{rel: rel, e: e, fd: -1}
	if content != nil && e.Header != nil {
		size := e.Header.Size
		fr, isFd := content.(fdReader)
		switch {
		case isFd && size > exportSmallFile:
			fd, err := unix.FcntlInt(uintptr(fr), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return exportError(rel, err)
			}
			it.fd = fd
		case size > exportSmallFile:
			it.r = content // not the walker's: read by the writing stage
		case size > 0:
			// Read what the Writer will want, no more, and hand it over
			// with how the read ended, so that a short file fails the
			// same way (see Writer.copyContent).
			buf, a := p.reserve(int(min(size, exportSmallFile)))
			n, err := io.ReadFull(content, buf)
			it.data, it.arena = buf[:n], a
			if err != nil {
				it.rerr = err
				if err == io.ErrUnexpectedEOF {
					it.rerr = io.EOF
				}
			}
		}
	}
	return p.send(it)
}

// queueRead queues a small regular file for the reader stage: name in the
// directory dir (the walker's descriptor, shared), size bytes.
func (p *exportPipe) queueRead(rel string, e *Entry, dir *dirRef, name string) error {
	buf, a := p.reserve(int(e.Header.Size))
	dir.refs.Add(1)
	return p.send(exportItem{rel: rel, e: e, fd: -1, dir: dir, name: name, data: buf, arena: a})
}

// read is the reader stage: it fills the items queued with queueRead, in
// order, and passes every batch on.
func (p *exportPipe) read() {
	defer close(p.items)
	for b := range p.toRead {
		for i := range b {
			if it := &b[i]; it.dir != nil {
				select {
				case <-p.stop:
				default:
					it.readFile()
				}
			}
		}
		select {
		case p.items <- b:
		case <-p.stop:
			for i := range b {
				p.discard(&b[i])
			}
		}
	}
}

// readFile reads the item's file as the walker would have: a failure to
// open it stops the export there, a short read fails in the Writer.
func (it *exportItem) readFile() {
	fd, err := unix.Openat(it.dir.fd, it.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	it.dir.release()
	it.dir = nil
	if err != nil {
		it.err = exportError(it.rel, err)
		return
	}
	n, err := io.ReadFull(fdReader(fd), it.data)
	unix.Close(fd)
	it.data = it.data[:n]
	if err != nil {
		it.rerr = err
		if err == io.ErrUnexpectedEOF {
			it.rerr = io.EOF
		}
	}
}

// walk runs the walker and queues its error, if any, behind its entries.
func (p *exportPipe) walk(walk func() error) {
	defer close(p.walked)
	defer close(p.toRead)
	defer func() { p.release(p.arena) }()
	if err := walk(); err != nil && !errors.Is(err, errPipeStopped) {
		p.batch = append(p.batch, exportItem{fd: -1, err: err})
	}
	p.flush()
}

// write is the writing stage: it writes the walker's entries in order
// until the end, the walker's error or its own, then stops the walker and
// releases what is still queued.
func (p *exportPipe) write(put func(it *exportItem) error) error {
	var err error
	for b := range p.items {
		for i := range b {
			it := &b[i]
			if err == nil {
				if it.err != nil {
					err = it.err
				} else {
					err = put(it)
				}
				if err != nil {
					close(p.stop)
				}
			}
			p.discard(it)
		}
	}
	<-p.walked
	return err
}

// content is what the Writer reads for the item.
func (it *exportItem) content() io.Reader {
	switch {
	case it.fd >= 0:
		return fdReader(it.fd)
	case it.r != nil:
		return it.r
	case it.e.Header == nil || it.e.Header.Size == 0:
		return nil
	}
	return &dataReader{data: it.data, end: it.rerr}
}
