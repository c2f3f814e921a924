// Package containerid is the project's one container id rule: the ids a
// hook accepts from the runtime's state (package ocistate), names a
// per-container record by (package statefile) and a view's mountpoint by
// (package view). One rule, so that an id the hook accepts always has a
// record and a mountpoint.
package containerid

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by the error for an id that breaks the rule.
var ErrInvalid = errors.New("invalid container id")

// pattern is the rule runc and crun apply to container ids; a leading
// alphanumeric also excludes ".", ".." and hidden (temporary) names. It is
// checked by hand (valid), not by a package-level regexp: every hook run,
// a no-op included, would compile that at start-up.
const pattern = `^[A-Za-z0-9][A-Za-z0-9_.+-]*$`

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
	if !valid(id) {
		return fmt.Errorf("%w: %q (want %s)", ErrInvalid, id, pattern)
	}
	return nil
}

// valid reports whether id matches pattern.
func valid(id string) bool {
	if id == "" || !alnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !alnum(c) && c != '_' && c != '.' && c != '+' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
