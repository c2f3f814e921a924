package ocistate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/containerid"
)

// ErrInvalidState is wrapped by every error about a state that decodes but
// cannot be used: a bad id, a relative bundle, a negative pid.
var ErrInvalidState = errors.New("ocistate: invalid container state")

// ReadState decodes the OCI state a runtime writes on a hook's stdin
// (runtime-spec "State"). It accepts the shapes runc, crun and podman write:
// unknown keys (crun's "root") are ignored, the status is not checked against
// the hook stage (crun says "created" at createRuntime, runc "creating"), and
// the pid may be 0 (crun and podman at poststop, where podman writes the state
// itself with status "stopped").
//
// It reads a single JSON value and does not wait for EOF, so a runtime that
// keeps the pipe open does not hang the hook. It checks the id
// (containerid.Validate), that the bundle is an absolute path and that the
// pid is not negative; those errors wrap ErrInvalidState.
func ReadState(r io.Reader) (*specs.State, error) {
	var s specs.State
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: no state on input", ErrInvalidState)
		}
		return nil, fmt.Errorf("decode container state: %w", err)
	}
	if err := containerid.Validate(s.ID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
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
