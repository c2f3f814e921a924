package progress

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for mpb's rendering goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Fatal("a regular file is a terminal?")
	}
	if b := New(f, "x", 1<<30); b != nil {
		t.Fatal("New returned a bar for a regular file")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if b := New(w, "x", -1); b != nil {
		t.Fatal("New returned a bar for a pipe")
	}
}

func TestNilBar(t *testing.T) {
	var b *Bar
	b.SetBytes(1 << 30)
	b.SetEntries(5)
	if got := b.Reader(strings.NewReader("x")); got == nil {
		t.Fatal("nil Reader")
	}
	b.Done(nil)
}

func TestKnownTotal(t *testing.T) {
	var out syncBuffer
	const total = 3 * Threshold
	b := newBar(&out, "apply", total, 100)
	if b == nil {
		t.Fatal("no bar for a large total")
	}
	n, err := io.Copy(io.Discard, b.Reader(io.LimitReader(zeros{}, total)))
	if err != nil || n != total {
		t.Fatal(n, err)
	}
	b.SetEntries(42)
	b.Done(nil)
	s := out.String()
	for _, want := range []string{"apply", "MiB", "42 entries", "100 %"} {
		if !strings.Contains(s, want) {
			t.Errorf("bar output lacks %q:\n%q", want, s)
		}
	}
}

func TestSmallTotalDrawsNothing(t *testing.T) {
	var out syncBuffer
	if b := newBar(&out, "apply", Threshold-1, 100); b != nil {
		t.Fatal("bar for a small total")
	}
}

func TestUnknownTotalAppearsLate(t *testing.T) {
	var out syncBuffer
	b := newBar(&out, "export", -1, 100)
	b.SetBytes(Threshold / 2)
	b.mu.Lock()
	shown := b.p != nil
	b.mu.Unlock()
	if shown {
		t.Fatal("bar shown below the threshold")
	}
	b.SetBytes(2 * Threshold)
	b.Done(nil)
	if s := out.String(); !strings.Contains(s, "export") || !strings.Contains(s, "MiB") {
		t.Fatalf("no bar after the threshold:\n%q", s)
	}

	var out2 syncBuffer
	b = newBar(&out2, "export", -1, 100)
	b.SetBytes(Threshold / 2)
	b.Done(nil)
	if s := out2.String(); s != "" {
		t.Fatalf("small unknown work drew %q", s)
	}
}

func TestAbort(t *testing.T) {
	var out syncBuffer
	b := newBar(&out, "convert", 2*Threshold, 100)
	b.SetBytes(Threshold)
	b.Done(errors.New("boom")) // must not hang
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
