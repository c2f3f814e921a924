package hooks

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

func container(ann map[string]string) *ocistate.Container {
	c := &ocistate.Container{State: &specs.State{ID: "c1", Annotations: ann}, Spec: &specs.Spec{}}
	if n, ok := ann["io.kubernetes.container.name"]; ok {
		c.Name = n
	}
	return c
}

// requestCase is one container's annotations and what the hook makes of
// them: TestParseRequest checks the request, TestGateDecision that the
// hook's gate (hookcli.Noop) execs the engine for each that asks anything.
type requestCase struct {
	name    string
	ann     map[string]string
	cfg     *Config
	restore string
	export  *exportRequest
	errKey  string  // the key the error names; "" when none is expected
	errIs   []error // what errors.Is finds in it
	errMsg  string  // the whole message, when set
}

// requestCases are the cases of TestParseRequest and TestGateDecision.
func requestCases() []requestCase {
	gv := DefaultConfig()
	gv.Policy.GVisorCompat = true
	app := func(ann map[string]string) map[string]string {
		ann["io.kubernetes.container.name"] = "app"
		return ann
	}
	return []requestCase{
		{name: "nothing", ann: map[string]string{"other": "x"}},
		{name: "restore", ann: map[string]string{KeyRestore: "/var/lib/ocisnap/a.tar"}, restore: "/var/lib/ocisnap/a.tar"},
		{name: "gvisor-ignored-by-default", ann: map[string]string{KeyGVisorRestore: "/var/lib/ocisnap/g.tar"}},
		{name: "gvisor-compat", ann: map[string]string{KeyGVisorRestore: "/var/lib/ocisnap/g.tar"}, cfg: &gv, restore: "/var/lib/ocisnap/g.tar"},
		{name: "ocisnap-wins-over-gvisor", ann: map[string]string{KeyGVisorRestore: "/g", KeyRestore: "/o"}, cfg: &gv, restore: "/o"},
		{name: "export-defaults", ann: map[string]string{KeyExport: "/e"},
			export: &exportRequest{key: KeyExport, dest: "/e", format: layer.FormatOverlay, compression: layer.CompressionNone}},
		{name: "export-options", ann: map[string]string{KeyExport: "/e", KeyExportFormat: "oci", KeyExportCompression: "zstd"},
			export: &exportRequest{key: KeyExport, dest: "/e", format: layer.FormatOCI, compression: layer.CompressionZstd}},
		{name: "per-container-wins", ann: app(map[string]string{
			KeyRestore: "/plain", KeyRestore + ".app": "/mine", KeyExport + ".other": "/theirs"}), restore: "/mine"},
		{name: "bad-format", ann: map[string]string{KeyExport: "/e", KeyExportFormat: "docker"},
			errKey: KeyExportFormat, errIs: []error{ErrBadValue, layer.ErrUnknownFormat}},
		{name: "bad-format-per-container", ann: app(map[string]string{KeyExport: "/e", KeyExportFormat: "oci", KeyExportFormat + ".app": "docker"}),
			errKey: KeyExportFormat + ".app", errIs: []error{ErrBadValue, layer.ErrUnknownFormat}},
		{name: "bad-compression", ann: map[string]string{KeyExport: "/e", KeyExportCompression: "xz"},
			errKey: KeyExportCompression, errIs: []error{ErrBadValue, layer.ErrUnknownCompression}},
		{name: "empty-restore", ann: map[string]string{KeyRestore: ""}, errKey: KeyRestore, errIs: []error{ErrEmptyValue}},
		{name: "empty-restore-per-container", ann: app(map[string]string{KeyRestore: "/plain", KeyRestore + ".app": ""}),
			errKey: KeyRestore + ".app", errIs: []error{ErrEmptyValue}},
		{name: "empty-gvisor", ann: map[string]string{KeyGVisorRestore: ""}, cfg: &gv, errKey: KeyGVisorRestore, errIs: []error{ErrEmptyValue}},
		{name: "empty-export", ann: map[string]string{KeyExport: ""}, errKey: KeyExport, errIs: []error{ErrEmptyValue}},
		{name: "bad-view", ann: map[string]string{KeyView: "http://x", KeyViewBinds: "a:/b"}, errKey: KeyView, errIs: []error{ErrBadValue}},
		{name: "view-nothing-to-show", ann: map[string]string{KeyView: "image"}, errKey: KeyView, errIs: []error{ErrMissingKey}},
		{name: "binds-without-view", ann: map[string]string{KeyViewBinds: "a:/b"}, errKey: KeyViewBinds, errIs: []error{ErrMissingKey}},
		{name: "mount-without-view", ann: map[string]string{KeyViewMount: "/mnt"}, errKey: KeyViewMount, errIs: []error{ErrMissingKey}},
		{name: "bind-relative-dst", ann: map[string]string{KeyView: "image", KeyViewBinds: "boot/vmlinuz:run/k"},
			errKey: KeyViewBinds, errIs: []error{ErrBadValue}},
		{name: "bind-no-colon", ann: map[string]string{KeyView: "image", KeyViewBinds: "boot/vmlinuz"},
			errKey: KeyViewBinds, errIs: []error{ErrBadValue}},
		{name: "view-relative-source", ann: map[string]string{KeyView: "dir:rel", KeyViewBinds: "a:/b"}, errKey: KeyView, errIs: []error{ErrBadValue}},
		{name: "view-mount-root", ann: map[string]string{KeyView: "image", KeyViewMount: "/"}, errKey: KeyViewMount, errIs: []error{ErrBadValue}},
		// Unknown keys: every io.ocisnap.* key is a known one or its
		// per-container form, for any container name.
		{name: "per-container-other-name", ann: app(map[string]string{KeyRestore + ".web": "/w", KeyView + ".db": "image",
			KeyViewBinds + ".db": "a:/b", KeyExportFormat + ".a.b": "oci"})},
		{name: "nri-stamps", ann: map[string]string{KeyExport: "/var/lib/ocisnap/a.tar",
			ocistate.AnnotationNRINamespace: "team-a", ocistate.AnnotationNRIPodName: "p", ocistate.AnnotationNRIContainerName: "c"},
			export: &exportRequest{key: KeyExport, dest: "/var/lib/ocisnap/a.tar", format: layer.FormatOverlay, compression: layer.CompressionNone}},
		{name: "typo", ann: map[string]string{"io.ocisnap.restor": "/var/lib/ocisnap/a.tar"},
			errKey: "io.ocisnap.restor", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.restor=/var/lib/ocisnap/a.tar: unknown annotation; did you mean io.ocisnap.restore?"},
		{name: "typo-transposed", ann: map[string]string{KeyExport: "/e", "io.ocisnap.export-fromat": "oci"},
			errKey: "io.ocisnap.export-fromat", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.export-fromat=oci: unknown annotation; did you mean io.ocisnap.export-format?"},
		{name: "typo-per-container", ann: app(map[string]string{"io.ocisnap.exprot.web": "/e"}),
			errKey: "io.ocisnap.exprot.web", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.exprot.web=/e: unknown annotation; did you mean io.ocisnap.export.web?"},
		{name: "typo-binds", ann: map[string]string{KeyView: "image", "io.ocisnap.view-bind": "a:/b"},
			errKey: "io.ocisnap.view-bind", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.view-bind=a:/b: unknown annotation; did you mean io.ocisnap.view-binds?"},
		{name: "typo-case", ann: map[string]string{"io.ocisnap.Restore": "/x"}, errKey: "io.ocisnap.Restore", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.Restore=/x: unknown annotation; did you mean io.ocisnap.restore?"},
		{name: "empty-container-name", ann: map[string]string{KeyRestore + ".": "/x"}, errKey: KeyRestore + ".", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.restore.=/x: unknown annotation; did you mean io.ocisnap.restore?"},
		{name: "bare-prefix", ann: map[string]string{"io.ocisnap.": "x"}, errKey: "io.ocisnap.", errIs: []error{ErrUnknownKey}},
		{name: "typo-empty-value", ann: map[string]string{"io.ocisnap.exportt": ""}, errKey: "io.ocisnap.exportt", errIs: []error{ErrUnknownKey},
			errMsg: "io.ocisnap.exportt: unknown annotation; did you mean io.ocisnap.export?"},
		{name: "persist", ann: map[string]string{KeyPersist: "oci:/p"}, restore: "oci:/p",
			export: &exportRequest{key: KeyPersist, dest: "oci:/p", persist: true, format: layer.FormatOverlay, compression: layer.CompressionZstd}},
		{name: "persist-file", ann: map[string]string{KeyPersist: "/p.tar", KeyExportFormat: "oci"}, restore: "/p.tar",
			export: &exportRequest{key: KeyPersist, dest: "/p.tar", persist: true, format: layer.FormatOCI, compression: layer.CompressionNone}},
		{name: "persist-with-export", ann: map[string]string{KeyPersist: "/p.tar", KeyExport: "/e.tar"},
			errKey: KeyPersist, errIs: []error{ErrBadValue}},
		{name: "persist-empty", ann: map[string]string{KeyPersist: ""}, errKey: KeyPersist, errIs: []error{ErrEmptyValue}},
		{name: "export-exclude", ann: map[string]string{KeyExport: "/e", KeyExportExclude: "/tmp;/var/cache/,/tmp"},
			export: &exportRequest{key: KeyExport, dest: "/e", format: layer.FormatOverlay, compression: layer.CompressionNone, exclude: []string{"/tmp", "/var/cache"}}},
		{name: "export-exclude-per-container", ann: app(map[string]string{KeyExport: "/e", KeyExportExclude + ".app": "/a//b/../c"}),
			export: &exportRequest{key: KeyExport, dest: "/e", format: layer.FormatOverlay, compression: layer.CompressionNone, exclude: []string{"/a/c"}}},
		{name: "export-exclude-relative", ann: map[string]string{KeyExport: "/e", KeyExportExclude: "/tmp;var/cache"},
			errKey: KeyExportExclude, errIs: []error{ErrBadValue}},
		{name: "export-exclude-root", ann: map[string]string{KeyExport: "/e", KeyExportExclude: "/tmp,/.."},
			errKey: KeyExportExclude, errIs: []error{ErrBadValue}},
		{name: "export-exclude-nul", ann: map[string]string{KeyExport: "/e", KeyExportExclude: "/tmp\x00x"},
			errKey: KeyExportExclude, errIs: []error{ErrBadValue}},
		{name: "export-exclude-empty-item", ann: map[string]string{KeyExport: "/e", KeyExportExclude: "/tmp;"},
			errKey: KeyExportExclude, errIs: []error{ErrBadValue}},
		{name: "export-exclude-empty", ann: map[string]string{KeyExport: "/e", KeyExportExclude: ""},
			errKey: KeyExportExclude, errIs: []error{ErrBadValue}},
		{name: "export-exclude-without-export", ann: map[string]string{KeyExportExclude: "/tmp"},
			errKey: KeyExportExclude, errIs: []error{ErrMissingKey}},
		{name: "typo-beside-valid", ann: map[string]string{KeyRestore: "/r", "io.ocisnap.exporr": "/e"},
			errKey: "io.ocisnap.exporr", errIs: []error{ErrUnknownKey}},
	}
}

// TestParseRequest: what the annotations ask, and for each refused one an
// *AnnotationError naming the key as written (per-container suffix
// included) with the sentinel for what is wrong.
func TestParseRequest(t *testing.T) {
	def := DefaultConfig()
	for _, c := range requestCases() {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg == nil {
				cfg = &def
			}
			req, err := parseRequest(container(c.ann), cfg)
			if c.errKey != "" {
				var ae *AnnotationError
				if !errors.As(err, &ae) {
					t.Fatalf("err = %v, want an *AnnotationError", err)
				}
				if ae.Key != c.errKey || ae.Value != c.ann[c.errKey] {
					t.Errorf("error names %s=%q, want %s=%q: %v", ae.Key, ae.Value, c.errKey, c.ann[c.errKey], err)
				}
				for _, want := range c.errIs {
					if !errors.Is(err, want) {
						t.Errorf("err = %v, want one wrapping %v", err, want)
					}
				}
				if !strings.HasPrefix(err.Error(), c.errKey) {
					t.Errorf("message %q does not start with the key", err)
				}
				if c.errMsg != "" && err.Error() != c.errMsg {
					t.Errorf("message %q, want %q", err, c.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.restore != c.restore {
				t.Errorf("restore = %q, want %q", req.restore, c.restore)
			}
			if (req.export == nil) != (c.export == nil) || req.export != nil && !reflect.DeepEqual(*req.export, *c.export) {
				t.Errorf("export = %+v, want %+v", req.export, c.export)
			}
		})
	}
}

// TestCheckKeysAll: every unknown key is named, in key order, and the first
// is what errors.As finds.
func TestCheckKeysAll(t *testing.T) {
	err := checkKeys(map[string]string{"io.ocisnap.zz": "1", KeyRestore: "/r", "io.ocisnap.aa": "2", "other.key": "3"})
	var ae *AnnotationError
	if !errors.As(err, &ae) || ae.Key != "io.ocisnap.aa" {
		t.Fatalf("err = %v, want the first unknown key io.ocisnap.aa", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "io.ocisnap.aa=2: ") || !strings.HasPrefix(lines[1], "io.ocisnap.zz=1: ") {
		t.Errorf("err = %q, want both unknown keys, in order", err)
	}
	long := "io.ocisnap." + strings.Repeat("x", 1<<20)
	if err := checkKeys(map[string]string{long: ""}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("a 1 MiB key: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"restore", "restore", 0}, {"restor", "restore", 1}, {"", "view", 4},
		{"exprot", "export", 1}, {"export-fromat", "export-format", 1}, {"viwe", "view", 1},
		{"view-bind", "view-binds", 1}, {"abc", "xyz", 3}, {"ca", "abc", 3},
	} {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := editDistance(c.b, c.a); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.b, c.a, got, c.want)
		}
	}
}

// TestParseBinds: list items are separated by ";" or "," (podman splits an
// --annotation at commas, so ";" needs no quoting); an empty item is
// refused, not skipped.
func TestParseBinds(t *testing.T) {
	two := []viewBind{{"boot/vmlinuz", "/run/k"}, {"boot/initrd", "/run/i"}}
	for _, c := range []struct {
		in   string
		want []viewBind // nil: refused
	}{
		{"boot/vmlinuz:/run/k;boot/initrd:/run/i", two},
		{"boot/vmlinuz:/run/k,boot/initrd:/run/i", two},
		{"boot/vmlinuz:/run/k;boot/initrd:/run/i/,a:/x", append(append([]viewBind{}, two...), viewBind{"a", "/x"})},
		{"a:/b", []viewBind{{"a", "/b"}}},
		{"a:/b;", nil},
		{";a:/b", nil},
		{"a:/b;;c:/d", nil},
		{";", nil},
		{"", nil},
		{"a;b:/c", nil},
	} {
		got, err := ParseBinds(c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("ParseBinds(%q) = %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseBinds(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	// Through the annotation: the whole value is named.
	_, err := parseRequest(container(map[string]string{KeyView: "image", KeyViewBinds: "a:/b;"}), new(DefaultConfig()))
	var ae *AnnotationError
	if !errors.As(err, &ae) || ae.Key != KeyViewBinds || ae.Value != "a:/b;" || !errors.Is(err, ErrBadValue) {
		t.Errorf("err = %v, want %s=a:/b; refused", err, KeyViewBinds)
	}
}

// TestExportExcludeFlag: the administrator's --export-exclude paths are
// cleaned, a relative one or / is refused naming the flag, and the
// record's list is the administrator's then the container's, each once.
func TestExportExcludeFlag(t *testing.T) {
	cl := NewCommandLine()
	if err := cl.Parse([]string{"--export-exclude", "/var/cache/", "--export-exclude", "/tmp"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/var/cache", "/tmp"}; !slices.Equal(cl.Config.ExportExcludes, want) {
		t.Errorf("ExportExcludes = %q, want %q", cl.Config.ExportExcludes, want)
	}
	for _, bad := range []string{"tmp", "/", "/a\x00b"} {
		err := NewCommandLine().Parse([]string{"--export-exclude", bad})
		if err == nil || !strings.Contains(err.Error(), "--export-exclude") {
			t.Errorf("--export-exclude %q: err %v, want a refusal naming the flag", bad, err)
		}
	}
	if got, want := exportExcludes([]string{"/var/cache", "/tmp"}, []string{"/tmp", "/x"}), []string{"/var/cache", "/tmp", "/x"}; !slices.Equal(got, want) {
		t.Errorf("exportExcludes = %q, want %q", got, want)
	}
	if cl.Config.Policy.MaxExportBytes != 64<<30 {
		t.Errorf("default --max-export-bytes %d, want 64 GiB", cl.Config.Policy.MaxExportBytes)
	}
}
