package main

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/layer"
)

// writeTestTar writes a small snapshot in format f: a directory, a file of
// 5 bytes and a whiteout.
func writeTestTar(t *testing.T, path string, f layer.Format) {
	t.Helper()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w := layer.NewWriter(out, f)
	for _, e := range []struct {
		e       *layer.Entry
		content string
	}{
		{&layer.Entry{Path: "", Header: &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}}, ""},
		{&layer.Entry{Path: "etc", Header: &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}}, ""},
		{&layer.Entry{Path: "etc/app.conf", Header: &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: 5}}, "hello"},
		{&layer.Entry{Path: "etc/old", Whiteout: true}, ""},
	} {
		if err := w.WriteEntry(e.e, strings.NewReader(e.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestInspect: a plain tar's format is told by its whiteouts and it is said
// to carry no metadata; an oci: layout's manifest gives its layers, format
// and creation time.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []layer.Format{layer.FormatOverlay, layer.FormatOCI} {
		p := filepath.Join(dir, string(f)+".tar")
		writeTestTar(t, p, f)
		out, errOut, code := cli(t, nil, "inspect", "--json", p)
		if code != 0 {
			t.Fatalf("inspect %s: exit %d: %s", p, code, errOut)
		}
		var in inspection
		if err := json.Unmarshal([]byte(out), &in); err != nil {
			t.Fatalf("inspect --json: %v\n%s", err, out)
		}
		if in.Format != string(f) || in.Metadata || in.Compression != "none" || in.Entries != 4 || in.Bytes != 5 || len(in.Layers) != 1 {
			t.Errorf("inspect %s: %+v", f, in)
		}
		text, _, _ := cli(t, nil, "inspect", p)
		if !strings.Contains(text, "Metadata:     none") || !strings.Contains(text, "Format:       "+string(f)) {
			t.Errorf("inspect %s:\n%s", f, text)
		}
	}

	layout := "oci:" + filepath.Join(dir, "layout") + ":snap"
	if _, errOut, code := cli(t, nil, "push", filepath.Join(dir, "oci.tar"), layout); code != 0 {
		t.Fatalf("push to %s: exit %d: %s", layout, code, errOut)
	}
	out, errOut, code := cli(t, nil, "inspect", "--json", layout)
	if code != 0 {
		t.Fatalf("inspect %s: exit %d: %s", layout, code, errOut)
	}
	var in inspection
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if !in.Metadata || in.Kind != "oci" || !strings.HasPrefix(in.Digest, "sha256:") || len(in.Layers) != 1 ||
		!strings.HasPrefix(in.Layers[0].Digest, "sha256:") || in.Layers[0].MediaType == "" || in.Layers[0].Size <= 0 || in.Created == nil {
		t.Errorf("inspect %s: %+v", layout, in)
	}
	t.Logf("inspect %s:\n%s", layout, out)
	text, _, _ := cli(t, nil, "inspect", layout)
	if !strings.Contains(text, "Layers:       1") || !strings.Contains(text, "Base image:") {
		t.Errorf("inspect %s:\n%s", layout, text)
	}
	if _, errOut, code := cli(t, nil, "inspect", filepath.Join(dir, "missing.tar")); code == 0 || !strings.Contains(errOut, "missing.tar") {
		t.Errorf("inspect of a missing file: exit %d, %s", code, errOut)
	}
}
