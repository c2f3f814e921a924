package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// readFromPending records how it was written to and when it was committed.
type readFromPending struct {
	location.Pending
	readFroms int
	events    *[]string
}

func (p *readFromPending) ReadFrom(r io.Reader) (int64, error) {
	p.readFroms++
	return p.Pending.(io.ReaderFrom).ReadFrom(r)
}

func (p *readFromPending) Commit() error {
	*p.events = append(*p.events, "commit")
	return p.Pending.Commit()
}

// TestThawingPending: the export's Pending thaws the container (its
// beforeCommit) before the wrapped Pending commits, and hands file content
// to the wrapped Pending's ReadFrom (the file sink's copy_file_range), so
// that the wrapper costs the CLI export nothing.
func TestThawingPending(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "snap.tar")
	sink, err := location.ParseSink(dest, &policy.Policy{AllowDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := sink.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	rec := &readFromPending{Pending: inner, events: &events}
	p := &thawingPending{Pending: rec, beforeCommit: func() { events = append(events, "thaw") }}
	src := filepath.Join(dir, "content")
	if err := os.WriteFile(src, []byte(strings.Repeat("x", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	io.WriteString(p, "head|")
	if _, err := io.Copy(p, f); err != nil {
		t.Fatal(err)
	}
	if rec.readFroms != 1 {
		t.Errorf("the wrapped Pending's ReadFrom ran %d times, want 1", rec.readFroms)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, ",") != "thaw,commit" {
		t.Errorf("events %v, want thaw before commit", events)
	}
	if b, _ := os.ReadFile(dest); string(b) != "head|"+strings.Repeat("x", 4096) {
		t.Errorf("snapshot holds %d bytes", len(b))
	}
}
