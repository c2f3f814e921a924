//go:build !linux

package view

import (
	"context"
	"errors"
)

var errNotSupported = errors.New("view: boot views need Linux")

// Prepare is not supported outside Linux.
func Prepare(ctx context.Context, req *Request, st *State, save func() error) error {
	return errNotSupported
}

// Release is not supported outside Linux.
func Release(ctx context.Context, st *State, opts ReleaseOptions, save func() error) error {
	return errNotSupported
}
