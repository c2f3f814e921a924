// Package nri is ocisnap's NRI plugin (README.md, "Kubernetes"): it brings
// the hooks of the administrator's hooks.d file to containers created by
// containerd (which has no hooks.d) or CRI-O, for the containers whose pod
// or container annotations ask for ocisnap.
//
// For each CreateContainer the plugin (Adjust):
//
//   - leaves the pod sandbox (pause) container alone, and any container
//     that asks nothing (a nil adjustment);
//   - copies the container's io.ocisnap.* keys — the pod's and its own, the
//     plain keys and its per-container "<key>.<name>" keys, the container's
//     winning over the pod's — into the container's annotations (containerd
//     passes no pod annotation to a container unless configured to);
//   - stamps the pod's namespace, the pod's name and the container's name
//     from the runtime's pod data under keys of its own
//     (ocistate.AnnotationNRIPrefix), and removes whatever value a user gave
//     those keys, so the hook's --identity-from nri can trust them;
//   - adds the hooks of the matching ocisnap*.json files of the hooks.d
//     directories, matched by their "when" rules with
//     go.podman.io/common/pkg/hooks as CRI-O and Podman match them, with the
//     path, args and stages of the file unchanged: the administrator's
//     policy stays in one place.
//
// Threat model: annotations are written by whoever creates the pod; the
// plugin only copies io.ocisnap.* keys (never the engines' keys) and decides
// nothing about paths — the hook does, as root, against its own flags.
package nri
