// Package containerid is the project's one container id rule: the ids a
// hook accepts from the runtime's state (package ocistate), names a
// per-container record by (package statefile) and a view's mountpoint by
// (package view). One rule, so that an id the hook accepts always has a
// record and a mountpoint.
package containerid

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalid is wrapped by the error for an id that breaks the rule.
var ErrInvalid = errors.New("invalid container id")

// idRE is the rule runc and crun apply to container ids; a leading
// alphanumeric also excludes ".", ".." and hidden (temporary) names.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// MaxLen is the longest container id, in bytes: "<id>.json" fits
// NAME_MAX (255). (Runtimes and engines generate 64-hex-digit ids.)
const MaxLen = 250

// Validate returns an error wrapping ErrInvalid unless id is a valid
// container id: 1 to MaxLen bytes matching ^[A-Za-z0-9][A-Za-z0-9_.+-]*$.
// Such an id is one file name component, never hidden.
func Validate(id string) error {
	if len(id) > MaxLen {
		return fmt.Errorf("%w: %.40q... is %d bytes long, more than %d", ErrInvalid, id, len(id), MaxLen)
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w: %q (want %s)", ErrInvalid, id, idRE)
	}
	return nil
}
