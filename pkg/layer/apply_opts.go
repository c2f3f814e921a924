package layer

import "fmt"

// Default limits on what one Apply may write. A container's writable layer
// is rarely more than a few GiB and a few hundred thousand files (a full
// Debian or Fedora userland is about 60,000 entries); the defaults leave
// ample room for that while stopping a hostile snapshot from filling the
// host's disk or inode table.
const (
	DefaultMaxBytes   int64 = 64 << 30  // 64 GiB of file content
	DefaultMaxEntries int64 = 2_000_000 // tar entries, whiteouts included
)

// ApplyOpt configures Apply. Options validate their arguments and fail
// instead of silently clamping them.
type ApplyOpt func(*applyOptions) error

type applyOptions struct {
	idMap        *IDMap
	maxBytes     int64
	maxEntries   int64
	allowDevices bool
	progress     func(Stats)
}

func defaultApplyOptions() applyOptions {
	return applyOptions{maxBytes: DefaultMaxBytes, maxEntries: DefaultMaxEntries}
}

// WithIDMap translates the snapshot's uids and gids, which are ids inside
// the container, to host ids with m.ToHost. An id that m does not map fails
// the entry with ErrUnmappedID. nil is the identity.
func WithIDMap(m *IDMap) ApplyOpt {
	return func(o *applyOptions) error {
		o.idMap = m
		return nil
	}
}

// WithMaxBytes limits the content bytes Apply writes (regular files, plus
// any data that whiteout files carry); more fails with ErrLimitExceeded
// before the entry that would exceed it is written. Default
// DefaultMaxBytes.
func WithMaxBytes(n int64) ApplyOpt {
	return func(o *applyOptions) error {
		if n < 0 {
			return fmt.Errorf("max bytes %d: must not be negative", n)
		}
		o.maxBytes = n
		return nil
	}
}

// WithMaxEntries limits the number of entries (whiteouts and opaque markers
// included) Apply accepts; more fails with ErrLimitExceeded. Default
// DefaultMaxEntries.
func WithMaxEntries(n int64) ApplyOpt {
	return func(o *applyOptions) error {
		if n < 0 {
			return fmt.Errorf("max entries %d: must not be negative", n)
		}
		o.maxEntries = n
		return nil
	}
}

// WithAllowDevices allows character and block device entries (other than
// the char 0/0 whiteouts). By default they fail with ErrDeviceNotAllowed:
// a device node in a container's rootfs gives access to host hardware.
func WithAllowDevices(allow bool) ApplyOpt {
	return func(o *applyOptions) error {
		o.allowDevices = allow
		return nil
	}
}

// WithProgress makes Apply call fn with the running totals, at most every
// 64 entries or 4 MiB of content, and once at the end.
func WithProgress(fn func(Stats)) ApplyOpt {
	return func(o *applyOptions) error {
		o.progress = fn
		return nil
	}
}
