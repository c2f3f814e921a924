//go:build !linux

package view

import (
	"context"
	"errors"

	"github.com/ocisnap/ocisnap/pkg/statefile"
)

var errNotSupported = errors.New("view: boot views need Linux")

// Prepare is not supported outside Linux.
func Prepare(ctx context.Context, req *Request, st *statefile.View, save func() error) error {
	return errNotSupported
}

// Release is not supported outside Linux.
func Release(ctx context.Context, st *statefile.View, opts ReleaseOptions, save func() error) error {
	return errNotSupported
}
