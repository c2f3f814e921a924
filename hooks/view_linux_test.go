package hooks

import (
	"os"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/procstat"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// TestRecordParent: a createContainer hook records its parent (the
// container's init) with that process's start time, from /proc/self/stat.
func TestRecordParent(t *testing.T) {
	rec := &statefile.Record{ID: "c1", Pid: 1, PidStart: 7}
	if err := recordParent(rec); err != nil {
		t.Fatal(err)
	}
	start, err := procstat.StartTime(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Pid != os.Getppid() || rec.PidStart != start {
		t.Errorf("recorded pid %d start %d; want the parent %d started at %d", rec.Pid, rec.PidStart, os.Getppid(), start)
	}
	if !procstat.Alive(rec.Pid, rec.PidStart) {
		t.Error("the recorded parent is not alive")
	}
}
