package ocistate

import (
	"errors"
	"testing"
)

// TestNamespace: the engine keys, the NRI stamp, forged disagreeing keys
// and values that are not namespace names.
func TestNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		from string
		want string
		err  bool
	}{
		{"containerd", map[string]string{AnnotationContainerdNamespace: "team-a"}, IdentityEngine, "team-a", false},
		{"cri-o", map[string]string{AnnotationCRIONamespace: "team-a"}, "", "team-a", false},
		{"both agree", map[string]string{AnnotationContainerdNamespace: "team-a", AnnotationCRIONamespace: "team-a"}, "", "team-a", false},
		{"forged other engine's key", map[string]string{AnnotationContainerdNamespace: "team-b", AnnotationCRIONamespace: "team-a"}, "", "", true},
		{"none", map[string]string{"io.ocisnap.export": "/x"}, "", "", false},
		{"nri stamp", map[string]string{AnnotationNRINamespace: "team-a", AnnotationContainerdNamespace: "team-b"}, IdentityNRI, "team-a", false},
		{"nri without stamp", map[string]string{AnnotationContainerdNamespace: "team-a"}, IdentityNRI, "", false},
		{"engine ignores the stamp", map[string]string{AnnotationNRINamespace: "team-a"}, IdentityEngine, "", false},
		{"path in value", map[string]string{AnnotationContainerdNamespace: "../etc"}, "", "", true},
		{"unknown source", map[string]string{}, "user", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Namespace(tc.ann, tc.from)
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("Namespace = %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
			if err != nil && !errors.Is(err, ErrNamespace) {
				t.Fatalf("error %v does not wrap ErrNamespace", err)
			}
		})
	}
}

// TestForContainer: plain keys and this container's per-container keys
// concern it, other containers' keys and other families do not.
func TestForContainer(t *testing.T) {
	const oc, gv = "io.ocisnap.", "dev.gvisor.tar.rootfs.upper"
	for _, tc := range []struct {
		key, prefix, name string
		want              bool
	}{
		{"io.ocisnap.export", oc, "app1", true},
		{"io.ocisnap.export-format", oc, "app1", true},
		{"io.ocisnap.export.app1", oc, "app1", true},
		{"io.ocisnap.export.app2", oc, "app1", false},
		{"io.ocisnap.export.app1", oc, "", false},
		{"io.ocisnap.", oc, "app1", false},
		{"io.ocisnapx", oc, "app1", false},
		{"org.example.export", oc, "app1", false},
		{gv, gv, "app1", true},
		{gv + ".app1", gv, "app1", true},
		{gv + ".app2", gv, "app1", false},
		{gv + "x", gv, "app1", false},
	} {
		if got := ForContainer(tc.key, tc.prefix, tc.name); got != tc.want {
			t.Errorf("ForContainer(%q, %q, %q) = %v, want %v", tc.key, tc.prefix, tc.name, got, tc.want)
		}
	}
}
