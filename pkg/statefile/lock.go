package statefile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// lockFile is the state directory's lock (hidden: List skips it).
const lockFile = ".lock"

// ErrLocked is Lock's error when it would have to wait and may not.
var ErrLocked = errors.New("statefile: state directory locked")

// lockPoll is how often a waiting Lock tries again.
const lockPoll = 50 * time.Millisecond

// Lock takes the state directory's lock (an flock of its lock file, which
// is never removed): shared by each poststop while it releases and
// exports what a record holds, exclusive for whoever releases records of
// containers that are gone (`ocisnap gc`, the hook's own reclaim), so that
// a record is never released under the poststop using it. Without wait, a
// lock held by others is ErrLocked at once; with it, Lock tries until ctx
// is done. A missing directory holds no record to protect: nothing is
// locked (or created). The returned func unlocks.
func (d Dir) Lock(ctx context.Context, exclusive, wait bool) (func(), error) {
	p := filepath.Join(d.dir(), lockFile)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, filePerm)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(d.dir()); errors.Is(serr, fs.ErrNotExist) {
			return func() {}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	for {
		ok, err := tryLock(f, exclusive)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		if ok {
			return func() { f.Close() }, nil // closing releases the flock
		}
		if !wait {
			f.Close()
			return nil, ErrLocked
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
}
