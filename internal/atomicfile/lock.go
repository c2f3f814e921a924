package atomicfile

import "os"

// Lock modes of Flock.
const (
	LockEx   = lockEx   // exclusive, waiting
	LockExNB = lockExNB // exclusive, failing at once when held (IsWouldBlock)
	LockUn   = lockUn   // release
)

// Flock applies flock(2) to f (a no-op outside Linux, where LockExNB always
// fails). Locks belong to the open file description. Writers of other
// crash-safe files (pkg/location's layout blobs and spool) take their locks
// with it, so that one rule tells a live writer from a dead one.
func Flock(f *os.File, how int) error { return flock(f, how) }

// IsWouldBlock reports whether err is Flock's "held by someone else" for
// LockExNB.
func IsWouldBlock(err error) bool { return isWouldBlock(err) }

// TempName returns a new temporary name for name, of the form IsTemp
// recognises (so that CleanStale removes it once its writer is gone).
func TempName(name string) string { return tempName(name) }

// MaxAttempts bounds the retries of a writer whose temporary name is taken.
const MaxAttempts = maxAttempts
