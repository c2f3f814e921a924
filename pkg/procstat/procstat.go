// Package procstat reads what ocisnap needs of a process from
// /proc/<pid>/stat (proc(5)): its state, its parent and its start time.
// A pid together with its start time names one process for its whole
// life, whatever pid reuse happens later: the state records keep both, and
// a liveness check (Alive) compares both.
//
// The file is parsed in one place (Parse). Field 2 (comm) is chosen by
// the process and may hold spaces, parentheses and digits, so the fields
// are counted from after its last ')'.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// Stat is what is read of one /proc/<pid>/stat.
type Stat struct {
	// State is field 3: R, S, D, Z (zombie), X (dead), ...
	State byte
	// PPid is field 4, the parent's pid as the reading /proc numbers it.
	PPid int
	// Start is field 22 (starttime), in clock ticks after boot.
	Start uint64
}

// Running reports whether the process has not exited: neither a zombie
// (its namespaces and mounts are gone) nor dead.
func (s Stat) Running() bool { return s.State != 'Z' && s.State != 'X' }

// Read returns the stat of process pid.
func Read(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("process %d: not a process id", pid)
	}
	return readFile("/proc/"+strconv.Itoa(pid)+"/stat", fmt.Sprintf("process %d", pid))
}

// ReadSelf returns the stat of the calling process from /proc/self/stat.
// Where /proc is another pid namespace's than the caller's (a hook run
// inside a container before pivot_root sees the host's), its pid numbers
// are that namespace's: PPid is the parent as the host numbers it.
func ReadSelf() (Stat, error) {
	return readFile("/proc/self/stat", "this process")
}

func readFile(path, what string) (Stat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", what, err)
	}
	st, err := Parse(data)
	if err != nil {
		return Stat{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return st, nil
}

// StartTime returns the start time of pid in clock ticks after boot,
// field 22 (starttime) of /proc/<pid>/stat. Together with the pid it names
// a process uniquely.
func StartTime(pid int) (uint64, error) {
	st, err := Read(pid)
	if err != nil {
		return 0, err
	}
	return st.Start, nil
}

// Alive reports whether the process pid is running and is the one that
// started at start (see StartTime): a pid reused by another process is
// not alive. A zombie has exited (its namespaces and mounts are gone) and
// is not alive either. pid <= 0 is never alive.
func Alive(pid int, start uint64) bool {
	st, err := Read(pid)
	if err != nil {
		return false
	}
	return st.Start == start && st.Running()
}

// Parse parses the contents of a /proc/<pid>/stat file. Callers that read
// the file through a descriptor of /proc/<pid> they hold (package mountns)
// parse it here, so that the start time is that of the process they
// opened.
func Parse(data []byte) (Stat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return Stat{}, errors.New("no ')' closing the comm field")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	const ppidIdx, startIdx = 4 - 3, 22 - 3
	if len(fields) <= startIdx {
		return Stat{}, fmt.Errorf("%d fields after comm, want more than %d", len(fields), startIdx)
	}
	if len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("state field %q is not one character", fields[0])
	}
	ppid, err := strconv.Atoi(string(fields[ppidIdx]))
	if err != nil || ppid < 0 {
		return Stat{}, fmt.Errorf("ppid field %q is not a pid", fields[ppidIdx])
	}
	start, err := strconv.ParseUint(string(fields[startIdx]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("starttime field: %w", err)
	}
	return Stat{State: fields[0][0], PPid: ppid, Start: start}, nil
}
