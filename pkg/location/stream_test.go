package location

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// failWriter fails every write once closed.
type failWriter struct {
	bytes.Buffer
	closed bool
}

var errWriterClosed = errors.New("reader went away")

func (w *failWriter) Write(b []byte) (int, error) {
	if w.closed {
		return 0, errWriterClosed
	}
	return w.Buffer.Write(b)
}

// TestStreamPendingContract: the stream sink follows the Pending contract
// as the file sink does (TestCommit, TestAbort): Commit after Commit is nil,
// Abort after Commit does nothing, Commit after Abort is ErrAborted, a
// failed Commit repeats its error, Write after any of them fails.
func TestStreamPendingContract(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 3*bufSize/16+7) // crosses the buffer
	t.Run("commit", func(t *testing.T) {
		for _, content := range []string{"first", big, ""} {
			var out bytes.Buffer
			sink := NewStreamSink(&out, "stdout")
			if sink.String() != "stdout" {
				t.Errorf("String() = %q", sink)
			}
			pend, err := sink.Create(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(pend, content); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := pend.Commit(); err != nil {
					t.Fatalf("Commit #%d: %v", i, err)
				}
			}
			if err := pend.Abort(); err != nil {
				t.Errorf("Abort after Commit: %v", err)
			}
			if _, err := pend.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Write after Commit = %v, want os.ErrClosed", err)
			}
			if _, err := pend.(io.ReaderFrom).ReadFrom(strings.NewReader("x")); !errors.Is(err, os.ErrClosed) {
				t.Errorf("ReadFrom after Commit = %v, want os.ErrClosed", err)
			}
			if out.String() != content {
				t.Errorf("stream holds %d bytes, want %d", out.Len(), len(content))
			}
		}
	})
	t.Run("abort", func(t *testing.T) {
		var out bytes.Buffer
		pend, _ := NewStreamSink(&out, "stdout").Create(context.Background())
		io.WriteString(pend, "buffered")
		for i := range 2 {
			if err := pend.Abort(); err != nil {
				t.Fatalf("Abort #%d: %v", i, err)
			}
		}
		if err := pend.Commit(); !errors.Is(err, ErrAborted) {
			t.Errorf("Commit after Abort = %v, want ErrAborted", err)
		}
		if _, err := pend.Write([]byte("x")); !errors.Is(err, ErrAborted) {
			t.Errorf("Write after Abort = %v, want ErrAborted", err)
		}
		if out.Len() != 0 {
			t.Errorf("what was still buffered reached the stream after Abort: %q", out.String())
		}
	})
	t.Run("failed commit", func(t *testing.T) {
		w := &failWriter{}
		pend, _ := NewStreamSink(w, "stdout").Create(context.Background())
		io.WriteString(pend, "buffered")
		w.closed = true
		err := pend.Commit()
		if !errors.Is(err, errWriterClosed) || !strings.Contains(err.Error(), "stdout") {
			t.Fatalf("Commit = %v, want the writer's error naming stdout", err)
		}
		if err2 := pend.Commit(); err2 != err {
			t.Errorf("second Commit = %v, want %v", err2, err)
		}
		if err := pend.Abort(); err != nil {
			t.Errorf("Abort after failed Commit: %v", err)
		}
		if _, err2 := pend.Write([]byte("x")); err2 != err {
			t.Errorf("Write after failed Commit = %v, want %v", err2, err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := NewStreamSink(io.Discard, "stdout").Create(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Create = %v", err)
		}
	})
}

// TestStreamReadFrom: file content handed to ReadFrom lands after what was
// buffered before it, on a real file.
func TestStreamReadFrom(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "content")
	body := strings.Repeat("content!", bufSize/4+3)
	if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	pend, _ := NewStreamSink(out, "out").Create(context.Background())
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	io.WriteString(pend, "head|")
	if _, err := pend.(io.ReaderFrom).ReadFrom(in); err != nil {
		t.Fatal(err)
	}
	io.WriteString(pend, "|tail")
	if err := pend.Commit(); err != nil {
		t.Fatal(err)
	}
	assertContent(t, out.Name(), "head|"+body+"|tail")
}
