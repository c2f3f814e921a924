// Package cgroupfreeze freezes and thaws the processes of a container's
// cgroup, so that a snapshot of its writable layer is taken at one instant:
// a frozen process makes no system call, so no file changes while the layer
// is read.
//
// Both hierarchies are supported:
//
//   - cgroup v2: write "1" to cgroup.freeze and wait for "frozen 1" in
//     cgroup.events (Documentation/admin-guide/cgroup-v2.rst, "Core
//     Interface Files");
//   - cgroup v1: write FROZEN to freezer.state and read it back until the
//     kernel reports FROZEN rather than FREEZING
//     (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst).
//
// The cgroup is found from the runtime's state (runc records the cgroup
// paths of each container) or from /proc/<pid>/cgroup of the container's
// init process and the mount table.
//
// Do not use it on a cgroup that the runtime may freeze or thaw at the same
// time (`runc pause`/`resume`, `podman pause`): freezer state has one owner
// at a time. Hold leaves a cgroup that is already frozen alone, so
// snapshotting a paused container works and keeps it paused.
//
// The cgroup file system and the paths given are trusted (the runtime's and
// the administrator's).
package cgroupfreeze

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Version is a cgroup hierarchy version.
type Version int

const (
	V1 Version = 1 // the v1 freezer controller
	V2 Version = 2 // the unified hierarchy's core freezer
)

// State is a cgroup's freezer state.
type State string

const (
	Thawed   State = "THAWED"
	Freezing State = "FREEZING" // v1 only: not every task is frozen yet
	Frozen   State = "FROZEN"
)

// Interface files.
const (
	fileV2Freeze = "cgroup.freeze"
	fileV2Events = "cgroup.events"
	fileV1State  = "freezer.state"
)

var (
	// ErrNoFreezer is wrapped when a directory is no cgroup with a freezer
	// (neither cgroup.freeze nor freezer.state), or when a process's cgroup
	// cannot be found in a mounted hierarchy with a freezer.
	ErrNoFreezer = errors.New("cgroupfreeze: no freezer")
	// ErrTimeout is wrapped when a cgroup did not reach the frozen state in
	// time; the cgroup has been thawed again.
	ErrTimeout = errors.New("cgroupfreeze: timed out")
)

// Cgroup is one cgroup with a freezer.
type Cgroup struct {
	// Path is the cgroup's directory in the cgroup file system.
	Path    string
	Version Version
}

// Open returns the cgroup whose directory is dir: v2 if it has
// cgroup.freeze, v1 if it has freezer.state (a directory of the v1 freezer
// hierarchy). The root cgroup of either hierarchy cannot be frozen and has
// neither file.
func Open(dir string) (*Cgroup, error) {
	if _, err := os.Stat(filepath.Join(dir, fileV2Freeze)); err == nil {
		return &Cgroup{Path: dir, Version: V2}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, fileV1State)); err == nil {
		return &Cgroup{Path: dir, Version: V1}, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return nil, fmt.Errorf("%w: %s has neither %s nor %s", ErrNoFreezer, dir, fileV2Freeze, fileV1State)
}

func (c *Cgroup) String() string { return fmt.Sprintf("%s (cgroup v%d)", c.Path, c.Version) }

// State reads the cgroup's freezer state. For v2 it is Frozen when
// cgroup.events says "frozen 1", Thawed otherwise (a freeze that is still
// in progress reads Thawed).
func (c *Cgroup) State() (State, error) {
	switch c.Version {
	case V1:
		s, err := c.read(fileV1State)
		if err != nil {
			return "", err
		}
		switch st := State(s); st {
		case Thawed, Freezing, Frozen:
			return st, nil
		}
		return "", fmt.Errorf("cgroup %s: %s: unexpected state %q", c.Path, fileV1State, s)
	case V2:
		frozen, err := c.v2Frozen()
		if err != nil {
			return "", err
		}
		if frozen {
			return Frozen, nil
		}
		return Thawed, nil
	}
	return "", fmt.Errorf("cgroup %s: unknown cgroup version %d", c.Path, c.Version)
}

// Freeze freezes every process of the cgroup and returns once the kernel
// reports the cgroup frozen. If that does not happen before ctx is done,
// the cgroup is thawed again and the error wraps ErrTimeout (or ctx's
// error). Freezing a frozen cgroup is a no-op.
func (c *Cgroup) Freeze(ctx context.Context) error {
	var err error
	switch c.Version {
	case V1:
		err = c.freezeV1(ctx)
	case V2:
		err = c.freezeV2(ctx)
	default:
		err = fmt.Errorf("unknown cgroup version %d", c.Version)
	}
	if err != nil {
		if terr := c.Thaw(); terr != nil {
			err = errors.Join(err, terr)
		}
		return fmt.Errorf("freeze cgroup %s: %w", c.Path, err)
	}
	return nil
}

// Thaw lets the cgroup's processes run again and returns once the kernel
// reports it thawed. Thawing a cgroup that is not frozen is a no-op.
//
// A v1 cgroup whose parent is frozen stays frozen; a v2 cgroup whose
// ancestor is frozen too.
func (c *Cgroup) Thaw() error {
	var err error
	switch c.Version {
	case V1:
		err = c.write(fileV1State, string(Thawed))
		if err == nil {
			err = c.waitV1(Thawed)
		}
	case V2:
		err = c.write(fileV2Freeze, "0")
	default:
		err = fmt.Errorf("unknown cgroup version %d", c.Version)
	}
	if err != nil {
		return fmt.Errorf("thaw cgroup %s: %w", c.Path, err)
	}
	return nil
}

// Hold freezes c for the caller and returns the function that ends the
// hold. If c is already frozen (a paused container), Hold does nothing and
// neither does the returned function: the cgroup stays as its owner left
// it. Otherwise the function thaws c; it may be called more than once
// (only the first call acts) and from any goroutine.
func Hold(ctx context.Context, c *Cgroup) (release func() error, err error) {
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	if st == Frozen {
		return func() error { return nil }, nil
	}
	if err := c.Freeze(ctx); err != nil {
		return nil, err
	}
	return sync.OnceValue(c.Thaw), nil
}

func (c *Cgroup) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.Path, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// write writes one value to an interface file, in one write(2) as the
// cgroup file system wants it.
func (c *Cgroup) write(name, value string) error {
	f, err := os.OpenFile(filepath.Join(c.Path, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// v2Frozen reads the "frozen" key of cgroup.events.
func (c *Cgroup) v2Frozen() (bool, error) {
	ev, err := c.read(fileV2Events)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(ev, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "frozen" {
			return v == "1", nil
		}
	}
	return false, fmt.Errorf("%s: no \"frozen\" key (kernel older than 5.2?)", fileV2Events)
}

// pollInterval returns the wait before the i-th poll: short at first
// (an idle cgroup freezes in microseconds), 10ms later on.
func pollInterval(i int) time.Duration {
	if i < 10 {
		return 100 * time.Microsecond
	}
	return 10 * time.Millisecond
}

func (c *Cgroup) freezeV2(ctx context.Context) error {
	if err := c.write(fileV2Freeze, "1"); err != nil {
		return err
	}
	for i := 0; ; i++ {
		frozen, err := c.v2Frozen()
		if err != nil {
			return err
		}
		if frozen {
			return nil
		}
		if err := sleep(ctx, pollInterval(i)); err != nil {
			return err
		}
	}
}

// freezeV1 follows runc's libcontainer/cgroups/fs/freezer.go: a v1 freeze
// can get stuck in FREEZING when a task is in an uninterruptible sleep or
// races with a fork, so FROZEN is written again on every poll and, every
// 50 polls, the cgroup is briefly thawed to let a stuck task get out of the
// kernel.
func (c *Cgroup) freezeV1(ctx context.Context) error {
	for i := 0; ; i++ {
		if i%50 == 49 {
			if err := c.write(fileV1State, string(Thawed)); err != nil {
				return err
			}
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return err
			}
		}
		if err := c.write(fileV1State, string(Frozen)); err != nil {
			return err
		}
		st, err := c.read(fileV1State)
		if err != nil {
			return err
		}
		switch State(st) {
		case Frozen:
			return nil
		case Freezing, Thawed:
		default:
			return fmt.Errorf("%s: unexpected state %q", fileV1State, st)
		}
		if err := sleep(ctx, pollInterval(i)); err != nil {
			return err
		}
	}
}

// waitV1 waits (briefly: thawing does not block) until freezer.state reads
// want.
func (c *Cgroup) waitV1(want State) error {
	var st string
	for i := 0; i < 1000; i++ {
		var err error
		if st, err = c.read(fileV1State); err != nil {
			return err
		}
		if State(st) == want {
			return nil
		}
		time.Sleep(pollInterval(i))
	}
	return fmt.Errorf("%s is %q, want %q: %w", fileV1State, st, want, ErrTimeout)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("not frozen in time: %w", ErrTimeout)
		}
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
