//go:build !unix

package statefile

import "os"

// tryLock always succeeds: no flock here.
func tryLock(*os.File, bool) (bool, error) { return true, nil }
