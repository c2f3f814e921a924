package hooks

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/ocisnap/ocisnap/pkg/containerid"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// Bounds of the reclaim every hook run does (docs/failure-behaviour.md): a
// runtime that fails a container after createRuntime (its command does not
// exist, say) never calls poststop, so the container's view would stay
// mounted and its state stay recorded until `ocisnap gc`.
const (
	// reclaimAge is how old a record must be before a hook run looks at
	// it: a container being created has a record before its process is
	// there to be seen alive.
	reclaimAge = 10 * time.Second
	// reclaimCheck bounds the records one run reads and checks (running
	// containers included), reclaimMax those it releases; the candidates
	// are taken in random order so that over runs every one is seen.
	reclaimCheck = 16
	reclaimMax   = 4
	// reclaimTimeout bounds the time one run spends on it.
	reclaimTimeout = 2 * time.Second
)

// reclaimGone releases, by GC's rules (reclaim), what belongs to a few
// containers that are gone, other than self. It takes the state
// directory's lock without waiting, so it does nothing while a poststop
// (shared) or gc (exclusive) runs: the next run does it. Errors are logged.
func (h *hook) reclaimGone(ctx context.Context, self string) {
	ctx, cancel := context.WithTimeout(ctx, reclaimTimeout)
	defer cancel()
	ids := reclaimCandidates(h.state, self, time.Now().Add(-reclaimAge))
	if len(ids) == 0 {
		return // the common case: no lock taken, nothing touched
	}
	unlock, err := h.state.Lock(ctx, true, false)
	if err != nil {
		if !errors.Is(err, statefile.ErrLocked) {
			h.log.Warn("reclaim: lock the state directory", "err", err)
		}
		return
	}
	defer unlock()
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	done := 0
	for _, id := range ids[:min(len(ids), reclaimCheck)] {
		if ctx.Err() != nil || done >= reclaimMax {
			return
		}
		rec, err := h.state.Read(id)
		if err != nil {
			continue // removed meanwhile, or corrupt: gc reports it
		}
		out, err := reclaim(ctx, h.cfg, h.state, rec, "reclaim")
		if err != nil {
			h.log.Warn("reclaim of a container that is gone failed; left to ocisnap gc", "err", err)
			continue
		}
		if out != reclaimLive {
			done++
		}
	}
}

// reclaimCandidates lists the ids of records last written before cutoff,
// from the directory listing and one lstat each: no record is read.
func reclaimCandidates(sd statefile.Dir, self string, cutoff time.Time) []string {
	dir := sd.Path
	if dir == "" {
		dir = statefile.DefaultDir
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || id == self || strings.HasPrefix(id, ".") || !e.Type().IsRegular() || containerid.Validate(id) != nil {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			ids = append(ids, id)
		}
	}
	return ids
}
