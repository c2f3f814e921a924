package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/pkg/procstat"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// reclaimFixture writes records into a new state directory: dead ones (no
// process) and a live one (this process), old or just written.
func reclaimFixture(t *testing.T, dead, young int) (*hook, statefile.Dir) {
	t.Helper()
	sd := statefile.Dir{Path: t.TempDir()}
	old := time.Now().Add(-time.Minute)
	write := func(id string, pid int, start uint64, mtime time.Time) {
		if err := sd.Write(&statefile.Record{ID: id, Pid: pid, PidStart: start, Created: mtime}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(sd.File(id), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	for i := range dead {
		write(fmt.Sprintf("dead%02d", i), 0, 0, old)
	}
	for i := range young {
		write(fmt.Sprintf("young%02d", i), 0, 0, time.Now())
	}
	start, err := procstat.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	write("live", os.Getpid(), start, old)
	write("self", 0, 0, old)
	cfg := Config{StateDir: sd.Path, Logger: slog.New(slog.DiscardHandler)}
	return &hook{cfg: &cfg, log: cfg.Logger, state: sd}, sd
}

func ids(t *testing.T, sd statefile.Dir) map[string]bool {
	t.Helper()
	recs, errs := sd.List()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m := map[string]bool{}
	for _, r := range recs {
		m[r.ID] = true
	}
	return m
}

// TestReclaimGone: a hook run removes the records of containers that are
// gone (by gc's rules) that are older than reclaimAge, at most reclaimMax
// per run, never its own container's, a live one's or a young one's; over
// runs it gets them all.
func TestReclaimGone(t *testing.T) {
	h, sd := reclaimFixture(t, reclaimMax+2, 2)
	h.reclaimGone(context.Background(), "self")
	left := ids(t, sd)
	dead := 0
	for id := range left {
		if id[:4] == "dead" {
			dead++
		}
	}
	if dead != 2 {
		t.Errorf("after one run %d dead records left, want 2 (at most %d reclaimed per run): %v", dead, reclaimMax, left)
	}
	h.reclaimGone(context.Background(), "self")
	left = ids(t, sd)
	want := map[string]bool{"live": true, "self": true, "young00": true, "young01": true}
	if fmt.Sprint(left) != fmt.Sprint(want) {
		t.Errorf("after two runs %v left, want %v", left, want)
	}
}

// TestReclaimWaitsForPoststop: while a poststop holds the state lock
// (shared), a hook run reclaims nothing; gc would wait for it.
func TestReclaimWaitsForPoststop(t *testing.T) {
	h, sd := reclaimFixture(t, 2, 0)
	unlock, err := sd.Lock(context.Background(), false, true)
	if err != nil {
		t.Fatal(err)
	}
	h.reclaimGone(context.Background(), "self")
	if left := ids(t, sd); !left["dead00"] || !left["dead01"] {
		t.Errorf("reclaimed under a poststop's lock: %v left", left)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := GC(ctx, *h.cfg); err == nil {
		t.Errorf("gc did not wait for the poststop's lock")
	}
	unlock()
	h.reclaimGone(context.Background(), "self")
	if left := ids(t, sd); left["dead00"] || left["dead01"] {
		t.Errorf("not reclaimed once unlocked: %v left", left)
	}
}
