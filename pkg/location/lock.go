package location

import "github.com/ocisnap/ocisnap/internal/atomicfile"

// The layout's and spool's temporary files and locks follow atomicfile's
// rules, so that CleanStaleTemps and `ocisnap gc` tell live writers from
// dead ones the same way everywhere.
var (
	flock    = atomicfile.Flock
	tempName = atomicfile.TempName
)

const (
	lockEx      = atomicfile.LockEx
	lockExNB    = atomicfile.LockExNB
	lockUn      = atomicfile.LockUn
	maxAttempts = atomicfile.MaxAttempts
)
