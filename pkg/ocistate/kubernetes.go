package ocistate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// Kubernetes namespace keys that reach a container's spec from the engine's
// own pod data (README.md, "Kubernetes"), written after the user's
// annotations, so a user's annotation of the same name is overwritten:
//
//   - containerd v2.4.2, internal/cri/server/container_create.go:865-873
//     adds the pass-through pod and container annotations (none unless
//     configured) and then, at :930, annotations.DefaultCRIAnnotations,
//     whose internal/cri/annotations/annotations.go:112 sets
//     io.kubernetes.cri.sandbox-namespace from the sandbox metadata;
//     internal/cri/opts/spec_opts.go:112-118 (WithAnnotation) replaces any
//     value already in the spec.
//   - CRI-O (cri-o/cri-o f954a17e, v1.36), internal/factory/container/container.go:
//     the pod's annotations are copied at :203-230 and the container's at
//     :293-294, then the container's CRI labels at :297-298, among them the
//     kubelet's io.kubernetes.pod.namespace (set from the pod's namespace),
//     with generate's AddAnnotation, which replaces the value.
//
// CRI-O also passes the pod's annotations to its containers, so a user can
// add the other engine's key there; Namespace refuses a container whose
// engine keys disagree.
const (
	AnnotationContainerdNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationCRIONamespace       = "io.kubernetes.pod.namespace"
)

// Keys ocisnap-nri stamps from the runtime's own pod data (NRI's PodSandbox
// and Container), dropping any value a user gave them. They are read with
// --identity-from nri.
const (
	AnnotationNRIPrefix        = "io.ocisnap.nri."
	AnnotationNRINamespace     = AnnotationNRIPrefix + "namespace"
	AnnotationNRIPodName       = AnnotationNRIPrefix + "pod-name"
	AnnotationNRIContainerName = AnnotationNRIPrefix + "container-name"
)

// Identity sources of a container's namespace (--identity-from).
const (
	IdentityEngine = "engine" // the engines' own keys (default)
	IdentityNRI    = "nri"    // ocisnap-nri's stamp
)

// ErrNamespace is wrapped by Namespace's errors: keys that disagree, a value
// that is not a Kubernetes namespace name, an unknown identity source.
var ErrNamespace = errors.New("ocistate: no trustworthy namespace")

// Namespace returns the Kubernetes namespace of a container from its
// annotations, read only from keys a user cannot forge for the identity
// source from (IdentityEngine or IdentityNRI; "" means IdentityEngine).
// It returns "" and no error when the container has no such key (it is not
// a Kubernetes container). With IdentityEngine, containerd's and CRI-O's
// keys must agree when both are present. The value must be a Kubernetes
// namespace name (an RFC 1123 label), so that it is safe as a path
// component.
func Namespace(annotations map[string]string, from string) (string, error) {
	var keys []string
	switch from {
	case "", IdentityEngine:
		keys = []string{AnnotationContainerdNamespace, AnnotationCRIONamespace}
	case IdentityNRI:
		keys = []string{AnnotationNRINamespace}
	default:
		return "", fmt.Errorf("%w: unknown identity source %q (want %s or %s)", ErrNamespace, from, IdentityEngine, IdentityNRI)
	}
	ns, nsKey := "", ""
	for _, k := range keys {
		v, ok := annotations[k]
		if !ok {
			continue
		}
		if nsKey != "" && v != ns {
			return "", fmt.Errorf("%w: %s=%q and %s=%q disagree", ErrNamespace, nsKey, ns, k, v)
		}
		ns, nsKey = v, k
	}
	if nsKey == "" {
		return "", nil
	}
	if !policy.ValidNamespace(ns) {
		return "", fmt.Errorf("%w: %s=%q is not a Kubernetes namespace name", ErrNamespace, nsKey, ns)
	}
	return ns, nil
}

// ForContainer reports whether the annotation key, of the family prefix
// (e.g. "io.ocisnap." or "dev.gvisor.tar.rootfs.upper"), concerns the
// container named name: a plain key of the family, or a per-container key
// "<key>.<name>" (Annotation's lookup, seen from the other side). For the
// "io.ocisnap." family a plain key has no dot after the prefix (option keys
// use hyphens, README.md "Annotations"); any other prefix is itself the plain
// key. Keys of other containers ("<key>.<other>") do not concern it.
func ForContainer(key, prefix, name string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return false
	}
	if strings.HasSuffix(prefix, ".") {
		if rest == "" {
			return false
		}
		i := strings.IndexByte(rest, '.')
		return i < 0 || (name != "" && rest[i+1:] == name)
	}
	return rest == "" || (name != "" && rest == "."+name)
}

// AnnotationGVisorRestore is gVisor's restore annotation, which the hook
// honours like io.ocisnap.restore with --gvisor-compat (docs/annotations.md).
const AnnotationGVisorRestore = "dev.gvisor.tar.rootfs.upper"
