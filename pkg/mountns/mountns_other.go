//go:build !linux

package mountns

import "os"

// Do is not supported outside Linux.
func Do(p Process, fn func() error) error { return ErrNotSupported }

// Same is not supported outside Linux.
func Same(p Process) (bool, error) { return false, ErrNotSupported }

// Outside runs fn.
func Outside(fn func() error) error { return fn() }

// Tree is a detached mount; not supported outside Linux.
type Tree struct{}

// CloneReadOnly is not supported outside Linux.
func CloneReadOnly(src *os.File) (*Tree, error) { return nil, ErrNotSupported }

// Attach is not supported outside Linux.
func (t *Tree) Attach(target *os.File) error { return ErrNotSupported }

// Close does nothing outside Linux.
func (t *Tree) Close() error { return nil }

// Unmount is not supported outside Linux.
func Unmount(target *os.File) error { return ErrNotSupported }
