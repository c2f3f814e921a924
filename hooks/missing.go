package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// MissingError is a restore source or a view source that does not exist.
// Its text says so in words an engine does not take for a missing
// executable: runc shows a hook's stderr in its error, and Podman turns an
// error mentioning "no such file or directory" into "OCI runtime attempted
// to invoke a command that was not found" and exit status 127
// (docs/failure-behaviour.md). It names the absolute path as given,
// cleaned, and never the internal path the lookup used. errors.Is(err,
// fs.ErrNotExist) holds.
type MissingError struct {
	What string // "snapshot", "view source"
	Path string // absolute
	Err  error  // the lookup's error
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s %q does not exist", e.What, e.Path)
}

func (e *MissingError) Unwrap() error { return e.Err }

// missing returns err as a MissingError when it is the failed lookup of
// path itself (a policy.PathError of path wrapping fs.ErrNotExist), else
// err unchanged.
func missing(what, path string, err error) error {
	var pe *policy.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != path || !filepath.IsAbs(path) {
		return err
	}
	return &MissingError{What: what, Path: filepath.Clean(path), Err: err}
}
