//go:build !linux

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
)

// Outside Linux there is no stale-file detection: every temporary file
// looks live, and none is removed.
const (
	lockEx = iota
	lockExNB
	lockUn
	openNonblock = 0
)

var errNoFlock = errors.New("flock not supported on this platform")

func flock(_ *os.File, how int) error {
	if how == lockExNB {
		return errNoFlock
	}
	return nil
}

func isWouldBlock(err error) bool { return errors.Is(err, errNoFlock) }

func linkCount(fs.FileInfo) uint64 { return 1 }
