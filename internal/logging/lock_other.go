//go:build !unix

package logging

import "os"

// Without flock concurrent openers may each rotate the file once.
func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
