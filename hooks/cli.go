package hooks

// Helpers for the ocisnap admin CLI: finding a live container from its
// runtime's state, the upper layer and export options the hook itself would
// use for it, and an explanation of what the hook would do for a set of
// annotations. They reuse the hook's own code paths so that the CLI and the
// hook never disagree.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/overlay"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// DefaultRuntimeRoots are the state directories of runc and crun when run
// as root (their --root defaults). Podman and CRI-O keep their containers
// there too unless configured otherwise.
var DefaultRuntimeRoots = []string{"/run/runc", "/run/crun"}

// ErrNoContainer is wrapped when no container with a given id (or unique
// id prefix) exists under the runtime roots searched.
var ErrNoContainer = errors.New("no such container")

// RuntimeContainer is a container as its runtime's state directory
// records it.
type RuntimeContainer struct {
	// State has the id, the bundle, the init pid and a status: "running"
	// while the init process lives, "stopped" otherwise.
	State specs.State
	// Runtime is "runc" or "crun"; StateFile the file read.
	Runtime, StateFile string
	// CgroupPaths is runc's record of the container's cgroup directories
	// (v1 controller name, or "" for v2, to directory); nil for crun.
	CgroupPaths map[string]string
}

// runcState is the part of runc's <root>/<id>/state.json
// (libcontainer.State) that ocisnap reads.
type runcState struct {
	ID               string            `json:"id"`
	InitProcessPid   int               `json:"init_process_pid"`
	InitProcessStart json.RawMessage   `json:"init_process_start"` // a number; a string before runc 1.0
	CgroupPaths      map[string]string `json:"cgroup_paths"`
	Config           struct {
		Labels []string `json:"labels"` // "bundle=<path>" among them
	} `json:"config"`
}

// crunState is the part of crun's <root>/<id>/status that ocisnap reads.
type crunState struct {
	Pid              int    `json:"pid"`
	ProcessStartTime uint64 `json:"process-start-time"`
	Bundle           string `json:"bundle"`
}

// FindRuntimeContainer reads the state of container id from the first of
// roots that has it: runc's <root>/<id>/state.json or crun's
// <root>/<id>/status. id may also be a prefix of exactly one container's
// id, as podman accepts. Roots that do not exist are skipped.
func FindRuntimeContainer(roots []string, id string) (*RuntimeContainer, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("container %q: %w: not a container id", id, ErrNoContainer)
	}
	var matches []string
	for _, root := range roots {
		if _, err := os.Stat(filepath.Join(root, id)); err == nil {
			return loadRuntimeContainer(root, id)
		}
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), id) {
				matches = append(matches, filepath.Join(root, e.Name()))
			}
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("container %q: %w under %s", id, ErrNoContainer, strings.Join(roots, ", "))
	case 1:
		return loadRuntimeContainer(filepath.Dir(matches[0]), filepath.Base(matches[0]))
	}
	return nil, fmt.Errorf("container %q: the prefix matches %d containers (%s, ...): give more of the id",
		id, len(matches), filepath.Base(matches[0]))
}

func loadRuntimeContainer(root, id string) (*RuntimeContainer, error) {
	dir := filepath.Join(root, id)
	rc := &RuntimeContainer{State: specs.State{Version: specs.Version, ID: id}}
	var start uint64
	if data, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil {
		var st runcState
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("container %s: decode %s: %w", id, filepath.Join(dir, "state.json"), err)
		}
		rc.Runtime, rc.StateFile = "runc", filepath.Join(dir, "state.json")
		rc.State.Pid, rc.CgroupPaths = st.InitProcessPid, st.CgroupPaths
		start, _ = strconv.ParseUint(strings.Trim(string(st.InitProcessStart), `"`), 10, 64)
		for _, l := range st.Config.Labels {
			if b, ok := strings.CutPrefix(l, "bundle="); ok {
				rc.State.Bundle = b
			}
		}
	} else if data, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		var st crunState
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("container %s: decode %s: %w", id, filepath.Join(dir, "status"), err)
		}
		rc.Runtime, rc.StateFile = "crun", filepath.Join(dir, "status")
		rc.State.Pid, rc.State.Bundle, start = st.Pid, st.Bundle, st.ProcessStartTime
	} else {
		return nil, fmt.Errorf("container %s: %w: %s has neither runc's state.json nor crun's status", id, ErrNoContainer, dir)
	}
	if rc.State.Bundle == "" {
		return nil, fmt.Errorf("container %s: %s does not name the bundle", id, rc.StateFile)
	}
	rc.State.Status = specs.StateStopped
	if rc.State.Pid > 0 && (start == 0 || statefile.Alive(rc.State.Pid, start)) {
		if _, err := statefile.ProcessStartTime(rc.State.Pid); err == nil {
			rc.State.Status = specs.StateRunning
		}
	}
	return rc, nil
}

// ContainerUpper returns the upper directory of container c's rootfs
// overlay and the layer.Write options that the hook's poststop export
// would use for it: the runtime's mountpoint stubs and the binds of views
// recorded in cfg.StateDir left out, ids mapped back into the container's
// user namespace, lower layers for metacopy and redirected directories.
// The rootfs must be mounted.
func ContainerUpper(c *ocistate.Container, cfg *Config) (string, []layer.WriteOpt, error) {
	h := &hook{cfg: cfg, log: cfg.Logger, state: statefile.Dir{Path: cfg.StateDir}}
	rec, err := h.newRecord(c, &request{export: &exportRequest{dest: "-"}})
	if err != nil {
		return "", nil, err
	}
	if old, err := h.state.Read(c.State.ID); err == nil {
		rec.Views = old.Views
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("read state of container %s: %w", c.State.ID, err)
	}
	return rec.Overlay.Upper, writeOpts(rec), nil
}

// RootfsUpper returns the upper directory of the overlay mounted at rootfs
// and the write options for its lower layers; nothing is excluded (there is
// no container spec to name the mountpoint stubs).
func RootfsUpper(rootfs string) (string, []layer.WriteOpt, error) {
	m, err := overlay.Find(rootfs)
	if err != nil {
		return "", nil, err
	}
	if m.Upper == "" {
		return "", nil, fmt.Errorf("rootfs %q is a read-only overlay (no upperdir): nothing to export", rootfs)
	}
	rec := &statefile.Record{Overlay: &statefile.Overlay{
		Upper: m.Upper, Lowers: m.Lowers, DataDirs: m.DataDirs, UserXattr: m.UserXattr,
	}}
	return m.Upper, writeOpts(rec), nil
}

// writeOpts are the options of an export of rec's upper, format and
// compression aside. (The hook's export uses the same list.)
func writeOpts(rec *statefile.Record) []layer.WriteOpt {
	opts := []layer.WriteOpt{
		layer.WithLowers(append(append([]string{}, rec.Overlay.Lowers...), rec.Overlay.DataDirs...)...),
		layer.WithUserXattr(rec.Overlay.UserXattr),
	}
	if ex := excludes(rec); len(ex) > 0 {
		opts = append(opts, layer.WithExclude(ex...))
	}
	if m := idMap(rec.UIDMappings, rec.GIDMappings); m != nil {
		opts = append(opts, layer.WithIDMap(m))
	}
	return opts
}

// Action is one thing the hook would do in a stage.
type Action struct {
	Stage  string `json:"stage"`  // the stage the hook acts in
	Action string `json:"action"` // restore, record-export, export, view, release-view, none, error
	Detail string `json:"detail"`
	// Problem is why the action would fail (a policy refusal, an invalid
	// annotation); empty if it would be attempted.
	Problem string `json:"problem,omitempty"`
}

// Explain says what ocisnap-hook, started with args (a hooks.d file's
// hook.args, argv[0] first) for the OCI stage stage, would do for a
// container with annotations. Paths are checked against the hook's policy
// lexically (as the hook does before opening anything); no file is opened.
func Explain(args []string, stage string, annotations map[string]string) []Action {
	cfg := DefaultConfig()
	fs := pflag.NewFlagSet("ocisnap-hook", pflag.ContinueOnError)
	fs.SetOutput(discard{})
	RegisterFlags(fs, &cfg)
	// The flags cmd/ocisnap-hook adds; any other flag fails the hook.
	fs.String("log-file", "", "")
	fs.String("log-level", "", "")
	fs.Bool("version", false, "")
	var rest []string
	if len(args) > 0 {
		rest = args[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return []Action{{Stage: stage, Action: "error", Problem: "hook arguments: " + err.Error() + " (the hook exits 2)"}}
	}
	if fs.NArg() > 0 {
		cfg.Stage = fs.Arg(0)
	}
	if err := cfg.Policy.Validate(); err != nil {
		return []Action{{Stage: stage, Action: "error", Problem: "hook arguments: " + err.Error() + " (the hook exits 2)"}}
	}
	status := map[string]specs.ContainerState{
		StagePrestart: specs.StateCreating, StageCreateRuntime: specs.StateCreating,
		StageCreateContainer: specs.StateCreating, "startContainer": specs.StateCreated,
		"poststart": specs.StateRunning, StagePoststop: specs.StateStopped,
	}[stage]
	st := &specs.State{Status: status, Annotations: annotations}
	acting, err := stageOf(cfg.Stage, st)
	if err != nil {
		return []Action{{Stage: stage, Action: "error", Problem: err.Error()}}
	}
	if !relevant(annotations, &cfg) {
		return []Action{{Stage: acting, Action: "none", Detail: "no annotation asks anything of ocisnap; the hook exits at once"}}
	}
	name := annotations[ocistate.AnnotationContainerdName]
	if name == "" {
		name = annotations[ocistate.AnnotationCRIOName]
	}
	c := &ocistate.Container{State: st, Name: name}
	req, err := parseRequest(c, &cfg)
	if err != nil {
		return []Action{{Stage: acting, Action: "error", Problem: err.Error() + " (the container fails to start)"}}
	}
	check := func(p string) string {
		if err := cfg.Policy.Check(p); err != nil {
			return err.Error()
		}
		return ""
	}
	var out []Action
	if acting == StagePoststop {
		if req.view != nil {
			out = append(out, Action{Stage: acting, Action: "release-view", Detail: "unmount the view prepared at create time"})
		}
		if e := req.export; e != nil {
			out = append(out, Action{Stage: acting, Action: "export",
				Detail:  fmt.Sprintf("write the writable layer to %s (%s format, %s compression)", e.dest, e.format, e.compression),
				Problem: check(e.dest)})
		}
		if req.restore != "" && req.export == nil && req.view == nil {
			out = append(out, Action{Stage: acting, Action: "none", Detail: "restore happens at create time; nothing to do at poststop"})
		}
		return out
	}
	if req.restore != "" {
		out = append(out, Action{Stage: acting, Action: "restore",
			Detail: fmt.Sprintf("apply %s (from %s) onto the rootfs", req.restore, req.restoreKey), Problem: check(req.restore)})
	}
	if e := req.export; e != nil {
		out = append(out, Action{Stage: acting, Action: "record-export",
			Detail: fmt.Sprintf("record the overlay for the export to %s at poststop", e.dest), Problem: check(e.dest)})
	}
	if v := req.view; v != nil {
		d := "view " + string(v.kind)
		if v.source != "" {
			d += ":" + v.source
		}
		for _, b := range v.binds {
			d += fmt.Sprintf(", bind %s -> %s", b.src, b.dst)
		}
		if v.mount != "" {
			d += ", whole view at " + v.mount
		}
		a := Action{Stage: acting, Action: "view", Detail: d}
		if v.source != "" {
			if err := cfg.Policy.CheckView(v.source); err != nil {
				a.Problem = err.Error()
			}
		}
		out = append(out, a)
	}
	return out
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
