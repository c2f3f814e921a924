package hooks

// The dry run of `ocisnap hooks`: what the hook would do for a set of
// annotations, decided by the hook's own flag parsing, request parsing and
// policy.

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

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
	cl := NewCommandLine()
	cl.Flags.SetOutput(io.Discard)
	var rest []string
	if len(args) > 0 {
		rest = args[1:]
	}
	if err := cl.Parse(rest); err != nil {
		return []Action{{Stage: stage, Action: "error", Detail: "the hook refuses its arguments",
			Problem: "hook arguments: " + err.Error() + " (the hook exits 2)"}}
	}
	cfg := cl.Config
	status := map[string]specs.ContainerState{
		StagePrestart: specs.StateCreating, StageCreateRuntime: specs.StateCreating,
		StageCreateContainer: specs.StateCreating, "startContainer": specs.StateCreated,
		"poststart": specs.StateRunning, StagePoststop: specs.StateStopped,
	}[stage]
	st := &specs.State{Status: status, Annotations: annotations}
	acting, err := stageOf(cfg.Stage, st)
	if err != nil {
		return []Action{{Stage: stage, Action: "error", Detail: "the hook cannot act in this stage", Problem: err.Error()}}
	}
	if !relevant(annotations, &cfg) {
		return []Action{{Stage: acting, Action: "none", Detail: "no annotation asks anything of ocisnap; the hook exits at once"}}
	}
	name := annotations[ocistate.AnnotationContainerdName]
	if name == "" {
		name = annotations[ocistate.AnnotationCRIOName]
	}
	c := &ocistate.Container{State: st, Name: name}
	ns, _ := ocistate.Namespace(annotations, cfg.IdentityFrom)
	cfg.Policy = cfg.Policy.Scoped(ns)
	req, err := parseRequest(c, &cfg)
	if err != nil {
		return []Action{{Stage: acting, Action: "error", Detail: "the hook refuses the annotations",
			Problem: err.Error() + " (refused at create time: the container does not start)"}}
	}
	if req.empty() {
		return []Action{{Stage: acting, Action: "none", Detail: nothingFor(annotations, name)}}
	}
	check := func(p string) string {
		if location.HoldsManifest(p) {
			// The same parse and policy check the hook does; no request.
			if _, err := location.ParseSource(p, &cfg.Policy); err != nil {
				return err.Error()
			}
			return ""
		}
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
				Detail:  fmt.Sprintf("write the writable layer to %s (%s format, %s compression)%s", e.dest, e.format, e.compression, persistNote(e)),
				Problem: check(e.dest)})
		}
		if req.restore != "" && req.export == nil && req.view == nil {
			out = append(out, Action{Stage: acting, Action: "none", Detail: "restore happens at create time; nothing to do at poststop"})
		}
		return out
	}
	if req.restore != "" {
		out = append(out, Action{Stage: acting, Action: "restore",
			Detail: fmt.Sprintf("apply %s (from %s) onto the rootfs%s", req.restore, req.restoreKey, firstStartNote(req)), Problem: check(req.restore)})
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

// nothingFor says why annotations that reach the hook ask nothing of it
// for a container called name: their keys are per-container keys of other
// containers (or of a named container, for one without a name).
func nothingFor(annotations map[string]string, name string) string {
	var others []string
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		rest, ok := strings.CutPrefix(k, keyPrefix)
		if !ok {
			continue
		}
		if _, suffix, per := strings.Cut(rest, "."); per && suffix != name {
			others = append(others, fmt.Sprintf("%s is for container %q", k, suffix))
		}
	}
	this := "this container has no name (set " + ocistate.AnnotationContainerdName + " or " +
		ocistate.AnnotationCRIOName + " to see a pod's container)"
	if name != "" {
		this = fmt.Sprintf("this container is %q", name)
	}
	if len(others) == 0 {
		return "nothing to do for these annotations; the hook exits at once"
	}
	return "the hook runs and does nothing: " + strings.Join(others, ", ") + "; " + this
}

// persistNote says how an io.ocisnap.persist export writes.
func persistNote(e *exportRequest) string {
	switch {
	case !e.persist:
		return ""
	case location.HoldsManifest(e.dest):
		return "; only the changes since the restore, as a new layer (up to --max-layers)"
	}
	return "; the whole snapshot"
}

// firstStartNote says that a persist location with nothing yet is fine.
func firstStartNote(req *request) string {
	if req.export != nil && req.export.persist {
		return " if it holds a snapshot (nothing there yet: the container starts empty)"
	}
	return ""
}
