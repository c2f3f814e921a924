package hooks

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/location"
)

// fuzzAnnotations turns "key=value" lines into annotations.
func fuzzAnnotations(text string) map[string]string {
	ann := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(line, "=")
		ann[k] = v
	}
	return ann
}

// FuzzParseRequest: the annotations are the container creator's. Whatever
// they hold, parseRequest never panics; what it accepts is what the keys
// say (the per-container key winning for the container's own name), every
// io.ocisnap.* key it accepts is a known one or its per-container form, and a
// restore source or export destination the policy then accepts is a path
// strictly inside the allowed directory.
func FuzzParseRequest(f *testing.F) {
	for i, s := range []string{
		KeyRestore + "=/var/lib/ocisnap/a.tar",
		KeyRestore + "=/var/lib/ocisnap/../../etc/shadow",
		KeyRestore + "=/var/lib/ocisnap",
		KeyRestore + "=/var/lib/ocisnapx/a.tar",
		KeyRestore + "=var/lib/ocisnap/a.tar",
		KeyRestore + "=/var/lib/ocisnap/a\x00.tar",
		KeyRestore + "=",
		KeyExport + "=/var/lib/ocisnap/e.tar\n" + KeyExportFormat + "=oci\n" + KeyExportCompression + "=zstd",
		KeyExport + "=/var/lib/ocisnap/./e.tar\n" + KeyExportFormat + "=docker",
		KeyExport + "=/var/lib/ocisnap//e.tar/",
		"io.kubernetes.container.name=app\n" + KeyRestore + "=/plain\n" + KeyRestore + ".app=/var/lib/ocisnap/mine",
		"io.kubernetes.cri.container-name=a.b\n" + KeyExport + ".a.b=/var/lib/ocisnap/x",
		"io.kubernetes.container.name=format\n" + KeyExport + "=/var/lib/ocisnap/x\n" + KeyExport + "-format.format=oci",
		KeyGVisorRestore + "=/var/lib/ocisnap/g.tar",
		KeyView + "=image\n" + KeyViewBinds + "=boot/vmlinuz:/run/k,/:/boot/all",
		KeyView + "=dir:/var/lib/ocisnap/d\n" + KeyViewMount + "=/mnt/../..",
		KeyView + "=file:relative\n" + KeyViewBinds + "=a:/b",
		KeyView + "=image\n" + KeyViewBinds + "=a:b:/c,,:/",
		KeyViewBinds + "=a:/b",
		"io.ocisnap.restor=/var/lib/ocisnap/a.tar",
		"io.ocisnap.restore.=/var/lib/ocisnap/a.tar",
		"io.ocisnap.export.web=/var/lib/ocisnap/a.tar\nio.ocisnap.exprot-format.web=oci",
		"io.ocisnap.persist=/var/lib/ocisnap/p.tar",
	} {
		testutil.AddSeed(f, fmt.Sprintf("%02d", i), s, false)
		testutil.AddSeed(f, fmt.Sprintf("%02d-gvisor", i), s, true)
	}
	f.Fuzz(func(t *testing.T, text string, gvisor bool) {
		ann := fuzzAnnotations(text)
		c := container(ann)
		if n, ok := ann["io.kubernetes.cri.container-name"]; ok && n != "" {
			c.Name = n
		}
		cfg := DefaultConfig()
		cfg.Policy.AllowDirs = []string{"/var/lib/ocisnap"}
		cfg.Policy.GVisorCompat = gvisor
		req, err := parseRequest(c, &cfg)
		if err != nil {
			return
		}
		for k := range ann {
			if rest, ok := strings.CutPrefix(k, keyPrefix); ok {
				name, suffix, dot := strings.Cut(rest, ".")
				if !slices.Contains(knownKeys, keyPrefix+name) || dot && suffix == "" {
					t.Fatalf("accepted with the unknown key %q", k)
				}
			}
		}
		lookup := func(key string) (string, bool) {
			if c.Name != "" {
				if v, ok := ann[key+"."+c.Name]; ok {
					return v, true
				}
			}
			v, ok := ann[key]
			return v, ok
		}
		if req.restore != "" {
			if v := ann[req.restoreKey]; v != req.restore {
				t.Fatalf("restore %q from %s, whose value is %q", req.restore, req.restoreKey, v)
			}
			if want, _ := lookup(strings.TrimSuffix(req.restoreKey, "."+c.Name)); want != req.restore {
				t.Fatalf("restore %q from %s, but the container's value is %q", req.restore, req.restoreKey, want)
			}
			if strings.HasPrefix(req.restoreKey, KeyGVisorRestore) && !gvisor {
				t.Fatalf("gVisor's annotation honoured without --gvisor-compat")
			}
			if _, err := location.ParseSource(req.restore, &cfg.Policy); err == nil {
				checkInside(t, req.restore)
			}
		} else if v, ok := lookup(KeyRestore); ok && v != "" {
			t.Fatalf("%s=%q ignored", KeyRestore, v)
		}
		if req.export != nil {
			key := KeyExport
			if req.export.persist {
				key = KeyPersist
			}
			if v, _ := lookup(key); v != req.export.dest || v == "" {
				t.Fatalf("export %q, annotation %q", req.export.dest, v)
			}
			if _, err := location.ParseSink(req.export.dest, &cfg.Policy); err == nil {
				checkInside(t, req.export.dest)
			}
		}
		if v := req.view; v != nil {
			if v.kind != viewImage && !filepath.IsAbs(v.source) {
				t.Fatalf("view source %q is not absolute", v.source)
			}
			if v.mount != "" && (!filepath.IsAbs(v.mount) || filepath.Clean(v.mount) != v.mount || v.mount == "/") {
				t.Fatalf("view mount %q", v.mount)
			}
			if len(v.binds) == 0 && v.mount == "" {
				t.Fatalf("a view with nothing to show was accepted")
			}
			checkBinds(t, v.binds)
		}
	})
}

// checkInside: p is strictly inside /var/lib/ocisnap, lexically.
func checkInside(t *testing.T, p string) {
	t.Helper()
	c := filepath.Clean(p)
	if !strings.HasPrefix(c, "/var/lib/ocisnap/") || strings.ContainsRune(p, 0) {
		t.Fatalf("the policy accepted %q (clean %q), not inside /var/lib/ocisnap", p, c)
	}
}

func checkBinds(t *testing.T, binds []viewBind) {
	t.Helper()
	for _, b := range binds {
		if b.src == "" {
			t.Fatalf("bind with an empty source: %+v", b)
		}
		if !filepath.IsAbs(b.dst) || filepath.Clean(b.dst) != b.dst || b.dst == "/" {
			t.Fatalf("bind destination %q is not a clean absolute path other than /", b.dst)
		}
	}
}

// FuzzParseBinds: "<src>:<dst>[;...]" from an annotation. ParseBinds never
// panics; it accepts one bind per item separated by ";" or ",", each with a
// non-empty source and a clean absolute destination other than "/".
func FuzzParseBinds(f *testing.F) {
	for i, s := range []string{"boot/vmlinuz:/run/k", "a:/b,c:/d", "/:/mnt/all", "a:/", "a:b", ":/b", "a:",
		"a:/b/../..", "a:/b/../../etc", "a:b:/c", ",", "a:/b,", "../../etc/shadow:/x", "a:/\x00",
		"a:/b;c:/d", "a:/b;c:/d,e:/f", ";", "a:/b;", ";a:/b", "a;b:/c"} {
		testutil.AddSeed(f, fmt.Sprintf("%02d", i), s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		binds, err := ParseBinds(s)
		if err != nil {
			return
		}
		if len(binds) != strings.Count(s, ",")+strings.Count(s, ";")+1 {
			t.Fatalf("%d binds from %q", len(binds), s)
		}
		checkBinds(t, binds)
	})
}
