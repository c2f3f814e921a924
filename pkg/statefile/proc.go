package statefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ProcessStartTime returns the start time of pid in clock ticks after boot,
// field 22 (starttime) of /proc/<pid>/stat (proc(5)). Together with the pid
// it names a process uniquely, whatever pid reuse happens later.
func ProcessStartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.start, nil
}

// Alive reports whether the process pid is running and is the one that
// started at start (see ProcessStartTime): a pid reused by another process
// is not alive. A zombie has exited (its namespaces and mounts are gone)
// and is not alive either. pid <= 0 is never alive.
func Alive(pid int, start uint64) bool {
	st, err := readStat(pid)
	if err != nil {
		return false
	}
	return st.start == start && st.state != 'Z' && st.state != 'X'
}

// ParseStat returns the start time (field 22) of the contents of a
// /proc/<pid>/stat file, and whether that process is running: not a
// zombie, not dead. For callers that read the file through a descriptor
// of /proc/<pid> they hold (package mountns), so that the start time is
// that of the process they opened.
func ParseStat(data []byte) (start uint64, running bool, err error) {
	st, err := parseStat(data)
	if err != nil {
		return 0, false, err
	}
	return st.start, st.state != 'Z' && st.state != 'X', nil
}

type procStat struct {
	state byte
	start uint64
}

func readStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, fmt.Errorf("process %d: not a process id", pid)
	}
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	data, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	st, err := parseStat(data)
	if err != nil {
		return procStat{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return st, nil
}

// parseStat parses the contents of /proc/<pid>/stat. Field 2 (comm) is in
// parentheses and may itself hold spaces, parentheses and digits, so the
// fields are counted from after its LAST ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("no ')' closing the comm field")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
	const startIdx = 22 - 3
	if len(fields) <= startIdx {
		return procStat{}, fmt.Errorf("%d fields after comm, want more than %d", len(fields), startIdx)
	}
	if len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("state field %q is not one character", fields[0])
	}
	start, err := strconv.ParseUint(string(fields[startIdx]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("starttime field: %w", err)
	}
	return procStat{state: fields[0][0], start: start}, nil
}
