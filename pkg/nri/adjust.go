package nri

import (
	"maps"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// Annotation families the hook reads (README.md, "Annotations"): ocisnap's
// own keys and gVisor's restore key (honoured by the hook only with
// --gvisor-compat, and only matched by a hooks.d file that names it).
const ocisnapPrefix = "io.ocisnap."

// Keys telling the pod sandbox (pause) container apart, as the engines set
// them: containerd's io.kubernetes.cri.container-type and CRI-O's
// io.kubernetes.cri-o.ContainerType, "sandbox" for the pause container.
var sandboxTypeKeys = []string{"io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"}

// Decision is what Adjust decided for one container, for the log.
type Decision struct {
	// Adjustment is nil when the container gets nothing.
	Adjustment *api.ContainerAdjustment
	// Files are the hooks.d files whose hooks were added.
	Files []string
	// Copied are the annotation keys copied into the container.
	Copied []string
	// Dropped are user-supplied values of the plugin's own keys, removed.
	Dropped []string
	// Why says why nothing was added, when nothing was.
	Why string
}

// Adjust decides what the container ctr of pod gets: nothing for the
// sandbox container or a container whose annotations ask nothing of
// ocisnap (see the package doc); otherwise the hooks of hd's matching files,
// its io.ocisnap.* keys and the plugin's stamps. A user-supplied value of
// a stamp key is removed even from a container that asks nothing.
func Adjust(pod *api.PodSandbox, ctr *api.Container, hd *HooksDir) (*Decision, error) {
	d := &Decision{}
	if isSandbox(pod, ctr) {
		d.Why = "the pod sandbox container"
		return d, nil
	}
	name := ctr.GetName()
	forged := forgedStamps(ctr.GetAnnotations())
	copied := map[string]string{}
	// The pod's keys first, the container's own replace them key by key.
	for _, src := range []map[string]string{pod.GetAnnotations(), ctr.GetAnnotations()} {
		for k, v := range src {
			if concerns(k, name) {
				copied[k] = v
			}
		}
	}
	stamps := map[string]string{}
	for k, v := range map[string]string{
		ocistate.AnnotationNRINamespace:     pod.GetNamespace(),
		ocistate.AnnotationNRIPodName:       pod.GetName(),
		ocistate.AnnotationNRIContainerName: name,
	} {
		if v != "" {
			stamps[k] = v
		}
	}
	if len(copied) == 0 {
		d.Why = "no annotation asks anything of ocisnap"
		return d.dropOnly(forged), nil
	}
	// The container's annotations as the runtime will see them: what the
	// hooks.d "when" rules match, as CRI-O matches the spec's.
	final := maps.Clone(ctr.GetAnnotations())
	if final == nil {
		final = map[string]string{}
	}
	for _, k := range forged {
		delete(final, k)
	}
	maps.Copy(final, copied)
	maps.Copy(final, stamps)
	spec := &rspec.Spec{Process: &rspec.Process{Args: ctr.GetArgs()}}
	ociHooks, files, err := hd.Match(spec, final, hasBindMounts(ctr.GetMounts()))
	if err != nil {
		return nil, err
	}
	ociHooks = withoutPresent(ociHooks, ctr.GetHooks())
	if ociHooks == nil {
		d.Why = "no ocisnap hooks.d file matches its annotations, or the runtime added their hooks already"
		return d.dropOnly(forged), nil
	}
	adj := &api.ContainerAdjustment{}
	for _, k := range forged {
		if _, ok := stamps[k]; !ok {
			adj.RemoveAnnotation(k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(copied)) {
		adj.AddAnnotation(k, copied[k])
	}
	for k, v := range stamps {
		adj.AddAnnotation(k, v)
	}
	adj.AddHooks(api.FromOCIHooks(ociHooks))
	d.Adjustment, d.Files, d.Dropped = adj, files, forged
	d.Copied = slices.Sorted(maps.Keys(copied))
	return d, nil
}

// dropOnly is the adjustment of a container that gets nothing but the
// removal of forged stamp keys (nil when there are none).
func (d *Decision) dropOnly(forged []string) *Decision {
	if len(forged) == 0 {
		return d
	}
	adj := &api.ContainerAdjustment{}
	for _, k := range forged {
		adj.RemoveAnnotation(k)
	}
	d.Adjustment, d.Dropped = adj, forged
	return d
}

// concerns reports whether annotation key is one the hook reads for the
// container named name (ocistate.ForContainer): a plain io.ocisnap.* or
// gVisor key, or its per-container form for this container; never the
// plugin's own stamp keys.
func concerns(key, name string) bool {
	if strings.HasPrefix(key, ocistate.AnnotationNRIPrefix) {
		return false
	}
	return ocistate.ForContainer(key, ocisnapPrefix, name) ||
		ocistate.ForContainer(key, ocistate.AnnotationGVisorRestore, name)
}

// forgedStamps are the keys under the plugin's own prefix that the
// container already has: only the plugin may set them.
func forgedStamps(ann map[string]string) []string {
	var out []string
	for k := range ann {
		if strings.HasPrefix(k, ocistate.AnnotationNRIPrefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func isSandbox(pod *api.PodSandbox, ctr *api.Container) bool {
	if ctr.GetId() != "" && ctr.GetId() == pod.GetId() {
		return true
	}
	for _, k := range sandboxTypeKeys {
		if ctr.GetAnnotations()[k] == "sandbox" {
			return true
		}
	}
	return false
}

// hasBindMounts is the "hasBindMounts" of hooks.d "when" rules: a mount of
// type bind or with a bind option, as CRI-O computes it.
func hasBindMounts(mounts []*api.Mount) bool {
	for _, m := range mounts {
		if m.GetType() == "bind" || slices.Contains(m.GetOptions(), "bind") || slices.Contains(m.GetOptions(), "rbind") {
			return true
		}
	}
	return false
}

// withoutPresent drops from h the hooks the container already has in the
// same stage (same path and args): CRI-O also reads hooks.d itself, and a
// hook must not run twice. It returns nil when nothing is left.
func withoutPresent(h *rspec.Hooks, have *api.Hooks) *rspec.Hooks {
	if h == nil || have == nil {
		return h
	}
	filter := func(add []rspec.Hook, present []*api.Hook) []rspec.Hook {
		var out []rspec.Hook
		for _, a := range add {
			if !slices.ContainsFunc(present, func(p *api.Hook) bool {
				return p.GetPath() == a.Path && slices.Equal(p.GetArgs(), a.Args)
			}) {
				out = append(out, a)
			}
		}
		return out
	}
	out := &rspec.Hooks{
		Prestart:        filter(h.Prestart, have.GetPrestart()), //nolint:staticcheck // the administrator's stage, kept
		CreateRuntime:   filter(h.CreateRuntime, have.GetCreateRuntime()),
		CreateContainer: filter(h.CreateContainer, have.GetCreateContainer()),
		StartContainer:  filter(h.StartContainer, have.GetStartContainer()),
		Poststart:       filter(h.Poststart, have.GetPoststart()),
		Poststop:        filter(h.Poststop, have.GetPoststop()),
	}
	if len(out.Prestart)+len(out.CreateRuntime)+len(out.CreateContainer)+len(out.StartContainer)+len(out.Poststart)+len(out.Poststop) == 0 { //nolint:staticcheck
		return nil
	}
	return out
}
