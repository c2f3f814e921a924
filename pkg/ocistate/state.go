package ocistate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrInvalidState is wrapped by every error about a state that decodes but
// cannot be used: a bad id, a relative bundle, a negative pid.
var ErrInvalidState = errors.New("ocistate: invalid container state")

// MaxIDLength bounds a container id. Ids end up in file names under the state
// directory and in log lines; the bound keeps both sane. (Runtimes generate
// 64-hex-digit ids; a name component longer than 255 bytes still fails at
// open time on most file systems, with an error naming the file.)
const MaxIDLength = 1024

// idPattern is the id grammar we accept: it rules out "/", "." and "..",
// leading dots or dashes, spaces and control characters.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// ValidateID reports whether id is usable as a container id in a file name:
// non-empty, at most MaxIDLength bytes, and matching ^[A-Za-z0-9][A-Za-z0-9_.+-]*$.
// The error wraps ErrInvalidState.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty container id", ErrInvalidState)
	case len(id) > MaxIDLength:
		return fmt.Errorf("%w: container id is %d bytes long, more than %d", ErrInvalidState, len(id), MaxIDLength)
	case !idPattern.MatchString(id):
		return fmt.Errorf("%w: container id %q must match %s", ErrInvalidState, id, idPattern)
	}
	return nil
}

// ReadState decodes the OCI state a runtime writes on a hook's stdin
// (runtime-spec "State"). It accepts the shapes runc, crun and podman write:
// unknown keys (crun's "root") are ignored, the status is not checked against
// the hook stage (crun says "created" at createRuntime, runc "creating"), and
// the pid may be 0 (crun and podman at poststop, where podman writes the state
// itself with status "stopped").
//
// It reads a single JSON value and does not wait for EOF, so a runtime that
// keeps the pipe open does not hang the hook. It checks the id (ValidateID),
// that the bundle is an absolute path and that the pid is not negative; those
// errors wrap ErrInvalidState.
func ReadState(r io.Reader) (*specs.State, error) {
	var s specs.State
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: no state on input", ErrInvalidState)
		}
		return nil, fmt.Errorf("decode container state: %w", err)
	}
	if err := ValidateID(s.ID); err != nil {
		return nil, err
	}
	if s.Bundle == "" || !filepath.IsAbs(s.Bundle) {
		return nil, fmt.Errorf("%w: container %s: bundle %q is not an absolute path", ErrInvalidState, s.ID, s.Bundle)
	}
	s.Bundle = filepath.Clean(s.Bundle)
	if s.Pid < 0 {
		return nil, fmt.Errorf("%w: container %s: negative pid %d", ErrInvalidState, s.ID, s.Pid)
	}
	return &s, nil
}

// LoadState reads the state from the file at path, or from stdin when path is
// "-". See ReadState.
func LoadState(path string) (*specs.State, error) {
	if path == "-" {
		return ReadState(os.Stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open container state: %w", err)
	}
	defer f.Close()
	s, err := ReadState(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
