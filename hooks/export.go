package hooks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/overlay"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/procstat"
	"github.com/ocisnap/ocisnap/pkg/statefile"
	"github.com/ocisnap/ocisnap/pkg/upperrec"
	"github.com/ocisnap/ocisnap/pkg/view"
)

// checkExportDest refuses a destination the policy does not allow, at
// create time, so that the user learns it when the container starts.
func (h *hook) checkExportDest(e *exportRequest) error {
	h.ensureDefaultAllowDir()
	if h.ns != "" {
		if err := policy.MkdirScoped(&h.base, h.ns); err != nil {
			h.log.Warn("create the namespace's snapshot directory", "err", err)
		}
	}
	if location.HoldsManifest(e.dest) {
		return h.checkManifestDest(e.dest)
	}
	dir, _, err := h.cfg.Policy.OpenParent(e.dest)
	if err != nil {
		return err
	}
	return dir.Close()
}

// ensureDefaultAllowDir creates the built-in snapshot directory (0700) if
// the administrator kept it allowed and it does not exist yet: a rootless
// user's ~/.local/share/ocisnap, or /var/lib/ocisnap after `make install`
// into a prefix. A directory the administrator named is never created.
func (h *hook) ensureDefaultAllowDir() {
	d := h.cfg.defaultAllowDir
	if d == "" || !slices.Contains(h.cfg.Policy.AllowDirs, d) {
		return
	}
	if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(d, 0o700); err != nil {
			h.log.Warn("create the default snapshot directory", "dir", d, "err", err)
		}
	}
}

// newRecord builds the per-container record: what poststop needs even if
// the rootfs is unmounted by then (CRI-O unmounts storage first).
func (h *hook) newRecord(c *ocistate.Container, req *request) (*statefile.Record, error) {
	rec := &statefile.Record{
		ID:                c.State.ID,
		Name:              c.Name,
		Pid:               c.State.Pid,
		Bundle:            c.State.Bundle,
		Rootfs:            c.Rootfs,
		Created:           time.Now().UTC(),
		MountDestinations: c.MountDestinations(),
		UIDMappings:       c.UIDMappings(),
		GIDMappings:       c.GIDMappings(),
		Namespace:         h.ns,
	}
	if rec.Pid > 0 {
		if start, err := procstat.StartTime(rec.Pid); err == nil {
			rec.PidStart = start
		}
	}
	if req.export == nil && req.view == nil {
		return rec, nil
	}
	m, err := overlay.Find(c.Rootfs)
	if err != nil && req.export == nil && req.view.kind != viewImage {
		return rec, nil // a dir: or file: view needs no overlay; its stubs are removed from the rootfs
	}
	if err != nil {
		key := KeyExport
		if req.export == nil {
			key = KeyView
		}
		return nil, fmt.Errorf("%s: rootfs %q: %w", key, c.Rootfs, err)
	}
	rec.Overlay = &statefile.Overlay{
		Upper: m.Upper, Work: m.Work, Lowers: m.Lowers, DataDirs: m.DataDirs,
		Options: m.Options, UserXattr: m.UserXattr,
	}
	if req.export != nil {
		if m.Upper == "" {
			return nil, fmt.Errorf("%s: rootfs %q is a read-only overlay (no upperdir): nothing to export", KeyExport, c.Rootfs)
		}
		rec.Export = &statefile.Export{
			Dest:        req.export.dest,
			Format:      string(req.export.format),
			Compression: string(req.export.compression),
			Persist:     req.export.persist,
			Exclude:     exportExcludes(h.cfg.ExportExcludes, req.export.exclude),
		}
		if location.HoldsManifest(req.export.dest) {
			recordBase(rec.Export, c, m.Lowers)
		}
	}
	return rec, nil
}

// recoverRecord is used at poststop when no state was recorded (the host
// rebooted, /run was cleared, or the create-time hook did not run): if the
// rootfs is still a mounted overlay, export from it; otherwise log and give
// up cleanly.
func (h *hook) recoverRecord(st *specs.State) (*statefile.Record, error) {
	c, err := ocistate.Load(st)
	if err != nil || c.Spec == nil {
		h.log.Warn("no state recorded for this container and no config.json; nothing to do")
		return nil, nil
	}
	req, err := parseRequest(c, h.cfg)
	if err != nil || req.export == nil {
		if req != nil && req.view != nil {
			h.log.Warn("no state recorded for this container; its view (if any) is left to `ocisnap gc`")
		}
		return nil, nil
	}
	rec, err := h.newRecord(c, &request{export: req.export})
	if err != nil {
		h.log.Warn("no state recorded for this container and its rootfs is no longer an overlay; not exported",
			"annotation", KeyExport, "dest", req.export.dest, "err", err)
		return nil, nil
	}
	return rec, nil
}

// export writes the container's upper layer to the recorded destination,
// atomically: the previous snapshot stays whole until the new one is synced
// and renamed over it.
func (h *hook) export(ctx context.Context, rec *statefile.Record) error {
	if rec.Overlay == nil || rec.Overlay.Upper == "" {
		return errors.New("no overlay upper directory recorded")
	}
	f, err := layer.ParseFormat(rec.Export.Format)
	if err != nil {
		return err
	}
	comp, err := layer.ParseCompression(rec.Export.Compression)
	if err != nil {
		return err
	}
	sink, err := location.ParseSink(rec.Export.Dest, &h.cfg.Policy, h.registryOpt())
	if err != nil {
		return err
	}
	// --registry-timeout bounds the push's waits on the network
	// (registryOpt; the push streams while the snapshot is written): a
	// slow push leaves it in the spool.
	info := snapshotInfo(rec.Export)
	if info.Base != nil && info.Base.Name == "" {
		info.Base.Name = podmanImageName(rec.Overlay.Lowers)
	}
	location.Describe(sink, info)
	opts := append(writeOpts(rec), layer.WithFormat(f), layer.WithCompression(comp),
		layer.WithMaxExportBytes(h.cfg.Policy.MaxExportBytes))
	plan := h.planExport(rec)
	defer plan.close()
	if plan.delta != nil {
		opts = append(opts, layer.WithDelta(plan.delta))
	}
	var p location.Pending
	if a, ok := sink.(location.Appender); ok && plan.base != "" {
		p, err = a.CreateOn(ctx, plan.base)
		if errors.Is(err, location.ErrBaseMoved) || errors.Is(err, location.ErrNotFound) {
			h.log.Warn("the location no longer holds the restored snapshot: exporting a whole layer", "annotation", KeyPersist,
				"dest", rec.Export.Dest, "err", err)
			plan.delta.Full()
			plan.base = ""
		} else if err != nil && location.Kind(rec.Export.Dest) == location.KindDocker {
			// The registry cannot be reached to read the chain: a whole
			// layer, which the spool keeps, rather than nothing.
			h.log.Warn("cannot read the restored chain from the registry: exporting a whole layer", "annotation", KeyPersist,
				"dest", rec.Export.Dest, "err", err)
			plan.delta.Full()
			plan.base = ""
		} else if err != nil {
			return err
		}
	}
	if plan.base == "" {
		if p, err = sink.Create(ctx); err != nil {
			return err
		}
	}
	err = WriteSnapshot(ctx, p, rec.Overlay.Upper, opts...)
	if err == nil && plan.delta != nil {
		h.log.Info("exported", "dest", rec.Export.Dest, "layered", plan.base != "", "unchanged", plan.delta.Left,
			"whiteouts", plan.delta.Gone)
	}
	if errors.Is(err, location.ErrSpooled) {
		// Nothing is lost: `ocisnap push --pending` delivers it.
		h.log.Warn("export kept in the spool: the registry could not be reached", "annotation", KeyExport,
			"dest", rec.Export.Dest, "err", err)
		return nil
	}
	return err
}

// WriteSnapshot writes the upper dir as a snapshot into p and commits it,
// or aborts it on failure: only a complete snapshot is ever committed.
// Shared by the hook and the CLI (which creates p before it freezes the
// container, so that a bad output fails first).
func WriteSnapshot(ctx context.Context, p location.Pending, upper string, opts ...layer.WriteOpt) error {
	st, err := layer.Write(ctx, p, upper, opts...)
	if err != nil {
		return errors.Join(err, p.Abort())
	}
	location.SetLayerStats(p, st.Entries, st.Bytes)
	return p.Commit()
}

// exportExcludes is the administrator's list and then the container's, each
// path once.
func exportExcludes(admin, own []string) []string {
	var out []string
	for _, p := range slices.Concat(admin, own) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// excludes are the runtime's mountpoint stubs, every mount destination of
// the container (like `podman diff`, only the container's own changes),
// and for views the bind destinations and the stubs still recorded that
// hold nothing else (view.Excludes): never a file the container wrote
// beside a bind destination.
func excludes(rec *statefile.Record) []string {
	upper := ""
	if rec.Overlay != nil {
		upper = rec.Overlay.Upper
	}
	ex := view.Excludes(upper, viewStates(rec.Views), rec.MountDestinations)
	if rec.Export != nil {
		// io.ocisnap.export-exclude and --export-exclude, as recorded at
		// createRuntime (docs/annotations.md).
		ex = append(ex, rec.Export.Exclude...)
	}
	return ex
}

// preRecord returns the upper directory of a container whose export is
// requested, and, when a restore comes first, a record of what the upper
// holds before it (the runtime's stubs), so that recordUpper can tell the
// two apart. "" for upper: no record is kept (the export is then a whole
// snapshot, stubs included).
func (h *hook) preRecord(c *ocistate.Container, req *request) (upper, pre string) {
	if req.export == nil {
		return "", ""
	}
	m, err := overlay.Find(c.Rootfs)
	if err != nil || m.Upper == "" {
		return "", "" // newRecord says why
	}
	file := h.state.UpperFile(c.State.ID)
	if file == "" {
		return "", ""
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		h.log.Warn("no upper record: the export will include the runtime's stubs", "err", err)
		return "", ""
	}
	if req.restore == "" {
		return m.Upper, ""
	}
	pre = file + ".pre"
	if err := upperrec.Take(pre, m.Upper, upperrec.Header{}, "", true); err != nil {
		h.log.Warn("no upper record: the export will include the runtime's stubs", "err", err)
		os.Remove(pre)
		return "", ""
	}
	return m.Upper, pre
}

// recordUpper records what the upper holds after the restore (docs/snapshot-format.md,
// "Layered snapshots"): entries there before it and untouched by it are
// the runtime's (all of them when there was no restore), the others the
// restore's. A failure is logged: the export is then a whole snapshot.
func (h *hook) recordUpper(id, upper, pre string, noRestore bool, res restored) {
	file := h.state.UpperFile(id)
	hdr := upperrec.Header{Base: res.digest, Layers: res.layers, Format: res.format}
	if err := upperrec.Take(file, upper, hdr, pre, noRestore); err != nil {
		h.log.Warn("no upper record: the export will be a whole snapshot, with the runtime's stubs", "err", err)
		os.Remove(file)
	}
}

// exportPlan is how export writes: with which delta (nil: everything) and
// on top of which manifest ("" for a new snapshot of one layer).
type exportPlan struct {
	delta *upperrec.Delta
	base  digest.Digest
	close func()
}

// planExport reads the container's upper record: without one (state
// lost), or with one of another upper, the export is whole and says so;
// with one, the runtime's unchanged stubs are left out, and for
// io.ocisnap.persist on oci:/docker:// only the changes since the restore
// are written, as a layer on the restored manifest, while the chain stays
// within --max-layers and the format is the chain's.
func (h *hook) planExport(rec *statefile.Record) exportPlan {
	plan := exportPlan{close: func() {}}
	file := h.state.UpperFile(rec.ID)
	layered := rec.Export.Persist && location.HoldsManifest(rec.Export.Dest)
	r, hdr, err := upperrec.Open(file)
	if err != nil {
		if layered {
			h.log.Info("no record of the upper at create time: exporting a whole layer", "annotation", KeyPersist,
				"dest", rec.Export.Dest, "err", err)
		}
		return plan
	}
	if !hdr.Matches(rec.Overlay.Upper) {
		r.Close()
		h.log.Warn("the upper record is of another upper directory: exporting a whole layer", "dest", rec.Export.Dest,
			"record", file, "upper", rec.Overlay.Upper)
		return plan
	}
	plan.close = func() { r.Close() }
	incremental := false
	switch {
	case !layered || hdr.Base == "":
	case hdr.Format != rec.Export.Format:
		h.log.Info("the export format differs from the restored chain's: exporting a whole layer", "annotation", KeyPersist,
			"dest", rec.Export.Dest, "chain", hdr.Format, "format", rec.Export.Format)
	case h.cfg.MaxLayers > 0 && hdr.Layers+1 > h.cfg.MaxLayers:
		h.log.Info("the chain is at --max-layers: exporting one whole layer instead", "annotation", KeyPersist,
			"dest", rec.Export.Dest, "layers", hdr.Layers, "max", h.cfg.MaxLayers)
	default:
		incremental = true
		plan.base = digest.Digest(hdr.Base)
	}
	plan.delta = upperrec.NewDelta(r, incremental)
	return plan
}
