package location

import (
	"fmt"
	"os"
	"sync"
)

// States of a pendingState.
const (
	writing = iota
	committed
	aborted
	failed
)

// pendingState is the Pending contract's bookkeeping, shared by every
// sink's Pending (file, stream, layout): writes only while writing; Commit
// after Commit nil, after a failed Commit the same error, after Abort
// ErrAborted; Abort after either a no-op. A Pending embeds it and supplies
// only what committing and aborting do.
type pendingState struct {
	mu    sync.Mutex
	name  string // the location as messages name it
	state int
	err   error // of a failed Commit
}

// closedErr is what a write (or a second Commit) gets once the Pending is
// no longer writing. The caller holds mu.
func (s *pendingState) closedErr() error {
	switch s.state {
	case aborted:
		return ErrAborted
	case failed:
		return s.err
	}
	return fmt.Errorf("%s: %w", s.name, os.ErrClosed)
}

// lockWriting locks s for a write and returns nil while s is writing; the
// caller then unlocks mu. Otherwise it returns closedErr, unlocked.
func (s *pendingState) lockWriting() error {
	s.mu.Lock()
	if s.state != writing {
		err := s.closedErr()
		s.mu.Unlock()
		return err
	}
	return nil
}

// finish runs do, the commit itself, the first time only: its error (do
// wraps it) makes s failed, and every later Commit returns it; success
// makes s committed.
func (s *pendingState) finish(do func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case committed:
		return nil
	case aborted, failed:
		return s.closedErr()
	}
	if err := do(); err != nil {
		s.state, s.err = failed, err
		return err
	}
	s.state = committed
	return nil
}

// cancel runs do, the abort itself, only while s is writing; after a
// Commit (or an Abort) it does nothing.
func (s *pendingState) cancel(do func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != writing {
		return nil
	}
	s.state = aborted
	return do()
}
