//go:build linux

package layer

// Regular files are written in parallel by a small pool of workers. The
// applier resolves every path itself, in stream order, with the same
// openat2 confinement, and hands a worker either
//
//   - a file it has just created (a descriptor), or
//   - a directory descriptor and a name that is certainly free: the
//     directory was made by this Apply and nothing was applied at that
//     name yet, so the worker's O_CREAT|O_EXCL|O_NOFOLLOW creation cannot
//     meet an existing file, symlink or directory;
//
// with the content read from the stream. The worker creates the file if
// asked, writes it, sets ownership, mode, xattrs and times, and closes it.
// A worker never resolves a path.
//
// The namespace order of the serial applier is kept (parents first,
// removals and replacements where they are in the stream, hard links after
// their target, directory times last): the applier waits for the pool
// (sync) before anything that could meet a name a worker has yet to create
// — any removal, a hard link to it, a path through it, a new entry at the
// same name, a metadata change of its directory — and before the
// directory times. Creations by workers in a directory the applier is
// still filling are independent (different names).
//
// Why: a restored file is a handful of system calls, and creating it
// through overlayfs dominates them; workers overlap that kernel work with
// the parsing of the stream (see tests/bench/notes.md, "Where they do not:
// restore of small and tiny files").

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Pool bounds. A batch carries up to poolBatchFiles files whose content
// fits in its poolArenaSize arena; at most poolArenas batches exist, so the
// pool holds at most 8 MiB of content and 512 open files. Larger files are
// written by the applier itself: they are few, and their cost is the copy.
const (
	poolArenaSize  = 1 << 20
	poolArenas     = 8
	poolBatchFiles = 64
	poolMaxFile    = 256 << 10
	poolMaxWorkers = 4
)

// fileJob is a regular file to finish: fd is the file, or -1 to create
// base in dir with mode.
type fileJob struct {
	fd           int
	dir          *dirRef
	base         string
	mode         uint32
	name         string // the entry's name, for errors
	m            entryMeta
	data         []byte // the content, or nil if written already
	chown, chmod bool
}

type fileBatch struct {
	jobs  []fileJob
	arena []byte
	// The names its jobs create and their directory, forgotten by
	// inflight when the batch comes back (unless a sync forgot them all,
	// generation gen ago).
	names []string
	dir   string
	gen   uint64
}

type filePool struct {
	work    chan *fileBatch
	free    chan *fileBatch
	made    int
	cur     *fileBatch
	workers sync.WaitGroup
	pending sync.WaitGroup // batches handed out and not finished
	abort   atomic.Bool
	failed  atomic.Bool
	mu      sync.Mutex
	err     error // the first failure, an *entryError
	closed  bool

	// The names workers were asked to create and have perhaps not yet,
	// and their directories (with the number of batches).
	inflight     map[string]struct{}
	inflightDirs map[string]int
	gen          uint64 // bumped when a sync clears them
	// dir is the directory new files are being created in, shared with
	// the jobs.
	dir     *dirRef
	dirPath string
}

// newFilePool returns a pool, or nil where running the files' system calls
// in parallel cannot help (a single P).
func newFilePool() *filePool {
	n := goroutines(poolMaxWorkers)
	if n < 2 {
		return nil
	}
	p := &filePool{work: make(chan *fileBatch, poolArenas), free: make(chan *fileBatch, poolArenas),
		inflight: make(map[string]struct{}), inflightDirs: make(map[string]int)}
	p.workers.Add(n)
	for i := 0; i < n; i++ {
		go p.worker()
	}
	return p
}

// reserve returns size bytes of arena for the content of the next job.
func (p *filePool) reserve(size int) []byte {
	if p.cur != nil && (len(p.cur.jobs) >= poolBatchFiles || len(p.cur.arena)+size > cap(p.cur.arena)) {
		p.flush()
	}
	if p.cur == nil {
		p.cur = p.batch()
	}
	b := p.cur
	n := len(b.arena)
	b.arena = b.arena[:n+size]
	return b.arena[n : n+size : n+size]
}

// pushNew queues j, which creates the file path in directory dir (j.dir
// from createIn), and notes path as a name a worker will create.
func (p *filePool) pushNew(j fileJob, path, dir string) {
	if p.cur == nil {
		p.cur = p.batch()
	}
	b := p.cur
	if len(b.names) == 0 {
		b.dir = dir
		p.inflightDirs[dir]++
	}
	b.names = append(b.names, path)
	p.inflight[path] = struct{}{}
	p.push(j)
}

// push queues j; its data, if any, came from reserve.
func (p *filePool) push(j fileJob) {
	if p.cur == nil {
		p.cur = p.batch()
	}
	p.cur.jobs = append(p.cur.jobs, j)
	if len(p.cur.jobs) >= poolBatchFiles {
		p.flush()
	}
}

func (p *filePool) batch() *fileBatch {
	var b *fileBatch
	select {
	case b = <-p.free:
	default:
		if p.made < poolArenas {
			p.made++
			return &fileBatch{jobs: make([]fileJob, 0, poolBatchFiles), arena: make([]byte, 0, poolArenaSize), gen: p.gen}
		}
		b = <-p.free
	}
	// Its files are done.
	if b.gen == p.gen && len(b.names) > 0 {
		for _, n := range b.names {
			delete(p.inflight, n)
		}
		if k := p.inflightDirs[b.dir] - 1; k > 0 {
			p.inflightDirs[b.dir] = k
		} else {
			delete(p.inflightDirs, b.dir)
		}
	}
	b.names, b.dir, b.gen = b.names[:0], "", p.gen
	return b
}

func (p *filePool) flush() {
	if p.cur == nil {
		return
	}
	if len(p.cur.jobs) == 0 {
		p.cur.arena = p.cur.arena[:0]
		return
	}
	p.pending.Add(1)
	p.work <- p.cur
	p.cur = nil
}

func (p *filePool) worker() {
	defer p.workers.Done()
	for b := range p.work {
		for i := range b.jobs {
			j := &b.jobs[i]
			if p.abort.Load() || p.failed.Load() {
				if j.fd >= 0 {
					closeFd(j.fd)
				}
			} else if err := j.run(); err != nil {
				p.fail(&entryError{name: j.name, err: err})
			}
			if j.dir != nil {
				j.dir.release()
			}
			*j = fileJob{}
		}
		b.jobs, b.arena = b.jobs[:0], b.arena[:0]
		p.free <- b
		p.pending.Done()
	}
}

func (p *filePool) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.failed.Store(true)
}

// failure returns the first failure so far, without waiting.
func (p *filePool) failure() error {
	if !p.failed.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// wait hands out the current batch and waits until every queued file is
// finished; it returns the first failure.
func (p *filePool) wait() error {
	p.flush()
	p.pending.Wait()
	if len(p.inflight) > 0 {
		clear(p.inflight)
		clear(p.inflightDirs)
		p.gen++
	}
	return p.failure()
}

// settle waits for the files workers are to create, if any.
func (p *filePool) settle() error {
	if len(p.inflight) == 0 {
		return p.failure()
	}
	return p.wait()
}

// forgetDir drops the shared directory descriptor: the directory it was
// opened for may be removed or replaced, and a later job must not create
// its file in the old one.
func (p *filePool) forgetDir() {
	p.flush()
	if p.dir != nil {
		p.dir.release()
		p.dir, p.dirPath = nil, ""
	}
}

// createIn returns the shared descriptor of directory dir (open at fd,
// which the caller keeps) for a job creating a file in it (see pushNew).
// A batch holds the files of one directory: two workers then seldom
// create in the same directory, whose lock would serialize them.
func (p *filePool) createIn(dir string, fd int) (*dirRef, error) {
	if p.dir == nil || p.dirPath != dir {
		p.flush()
		d, err := newDirRef(fd)
		if err != nil {
			return nil, fmt.Errorf("dup directory: %w", err)
		}
		if p.dir != nil {
			p.dir.release()
		}
		p.dir, p.dirPath = d, dir
	}
	p.dir.refs.Add(1)
	return p.dir, nil
}

// creates reports whether a worker may yet create path or one of its
// ancestors.
func (p *filePool) creates(path string) bool {
	if len(p.inflight) == 0 {
		return false
	}
	for q := path; ; {
		if _, ok := p.inflight[q]; ok {
			return true
		}
		i := strings.LastIndexByte(q, '/')
		if i < 0 {
			return false
		}
		q = q[:i]
	}
}

// fills reports whether a worker may yet create a file in directory dir.
func (p *filePool) fills(dir string) bool {
	_, ok := p.inflightDirs[dir]
	return ok
}

// close stops the workers. With abort, files not yet finished are only
// closed.
func (p *filePool) close(abort bool) {
	if p.closed {
		return
	}
	p.closed = true
	if abort {
		p.abort.Store(true)
	}
	p.flush()
	close(p.work)
	p.workers.Wait()
	if p.dir != nil {
		p.dir.release()
		p.dir = nil
	}
}

// run creates the file if asked, writes the content and the metadata, and
// closes it.
func (j *fileJob) run() (err error) {
	if j.fd < 0 {
		j.fd, err = rawOpenat(j.dir.fd, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, j.mode)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
	}
	defer func() {
		if cerr := rawClose(j.fd); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	if len(j.data) > 0 {
		if _, err := rawWriteAll(j.fd, j.data); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	m := &j.m
	if j.chown {
		if err := rawFd3(unix.SYS_FCHOWN, j.fd, uintptr(m.uid), uintptr(m.gid)); err != nil {
			return fmt.Errorf("chown %d:%d: %w", m.uid, m.gid, err)
		}
	}
	if j.chmod {
		if err := rawFd3(unix.SYS_FCHMOD, j.fd, uintptr(m.mode), 0); err != nil {
			return fmt.Errorf("chmod %#o: %w", m.mode, err)
		}
	}
	if err := forXattrs(m.hdr, false, func(name string, value []byte) error {
		return unix.Fsetxattr(j.fd, name, value, 0)
	}); err != nil {
		return err
	}
	if err := rawFutimens(j.fd, &m.times); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
