package procstat

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// FuzzParse: /proc/<pid>/stat is read for a pid a state record names;
// its comm field is chosen by the process (any bytes, parentheses
// included). Parse never panics and, when it succeeds, returns the
// state, ppid and start time fields counted from the last ')'.
func FuzzParse(f *testing.F) {
	testutil.AddSeed(f, "systemd", []byte("1 (systemd) S 0 1 1 0 -1 4194560 1 1 0 0 1 1 0 0 20 0 1 0 42 1 1 1"))
	testutil.AddSeed(f, "comm-parens", []byte("7 (a) b) c) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 1 2"))
	testutil.AddSeed(f, "unclosed", []byte("7 (x"))
	testutil.AddSeed(f, "paren-only", []byte(")"))
	testutil.AddSeed(f, "start-overflow", []byte("1 () S 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 18446744073709551616"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Parse(data)
		if err != nil {
			return
		}
		fields := bytes.Fields(data[bytes.LastIndexByte(data, ')')+1:])
		if st.State != fields[0][0] {
			t.Fatalf("state %q, want %q", st.State, fields[0])
		}
		if ppid, err := strconv.Atoi(string(fields[1])); err != nil || st.PPid != ppid {
			t.Fatalf("ppid %d, want %q", st.PPid, fields[1])
		}
		if start, err := strconv.ParseUint(string(fields[19]), 10, 64); err != nil || st.Start != start {
			t.Fatalf("start %d, want %q", st.Start, fields[19])
		}
	})
}
