//go:build linux

package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fileSink is an output like pkg/location's: Write, and ReadFrom that
// hands file content to os.File.ReadFrom (copy_file_range).
type fileSink struct {
	f         *os.File
	readFroms int
}

func (s *fileSink) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s *fileSink) ReadFrom(r io.Reader) (int64, error) {
	s.readFroms++
	return s.f.ReadFrom(r)
}

// writerOnly hides a writer's ReadFrom.
type writerOnly struct{ io.Writer }

// TestWriteLargeFileCopy: a large regular file goes to a sink with ReadFrom
// file to file, and the snapshot is byte for byte the one written through
// Write alone, serial and in stages.
func TestWriteLargeFileCopy(t *testing.T) {
	upper := t.TempDir()
	big := make([]byte, 3<<20+123) // not a multiple of anything
	rand.Read(big)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "d"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "d/big"), big, 0o644))
	must(os.WriteFile(filepath.Join(upper, "d/mib"), big[:1<<20], 0o600))
	must(os.WriteFile(filepath.Join(upper, "d/small"), []byte("small"), 0o644))
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		var plain bytes.Buffer
		if _, err := Write(context.Background(), writerOnly{&plain}, upper); err != nil {
			t.Fatalf("parallelism %d: Write to a plain writer: %v", n, err)
		}
		f, err := os.Create(filepath.Join(t.TempDir(), "out.tar"))
		must(err)
		sink := &fileSink{f: f}
		st, err := Write(context.Background(), sink, upper)
		if err != nil {
			t.Fatalf("parallelism %d: Write to a file sink: %v", n, err)
		}
		must(f.Close())
		got, err := os.ReadFile(f.Name())
		must(err)
		if !bytes.Equal(got, plain.Bytes()) {
			t.Fatalf("parallelism %d: file sink got %d bytes, plain writer %d: not the same snapshot", n, len(got), plain.Len())
		}
		if sink.readFroms != 2 {
			t.Errorf("parallelism %d: sink.ReadFrom called %d times, want once per large file (2)", n, sink.readFroms)
		}
		if want := int64(len(big) + 1<<20 + 5); st.Bytes != want {
			t.Errorf("parallelism %d: stats %d content bytes, want %d", n, st.Bytes, want)
		}
		tr := tar.NewReader(bytes.NewReader(got))
		seen := 0
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(err)
			data, err := io.ReadAll(tr)
			must(err)
			switch h.Name {
			case "./d/big":
				seen++
				if !bytes.Equal(data, big) {
					t.Errorf("parallelism %d: ./d/big content differs", n)
				}
			case "./d/mib":
				seen++
				if !bytes.Equal(data, big[:1<<20]) {
					t.Errorf("parallelism %d: ./d/mib content differs", n)
				}
			}
		}
		if seen != 2 {
			t.Errorf("parallelism %d: %d of the 2 large files in the snapshot", n, seen)
		}
	}
}

// TestWriterCopyFileShort: content shorter than its header's size fails
// the entry with the same error on the file-to-file path (to a sink with
// ReadFrom or without) as on the read path; a cancelled context stops the
// copy.
func TestWriterCopyFileShort(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, make([]byte, 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFd := func(fd int) io.Reader { return fdReader(fd) }
	inMemory := func(int) io.Reader { return bytes.NewReader(make([]byte, 300<<10)) } // the read path
	for _, tc := range []struct {
		name    string
		sink    func(*os.File) io.Writer
		content func(fd int) io.Reader
		ctx     func() context.Context
		size    int64
		wantErr error
		wantMsg string
	}{
		{"short/file", func(f *os.File) io.Writer { return &fileSink{f: f} }, fromFd, context.Background, 400 << 10, io.ErrUnexpectedEOF, "content ended after 307200 of 409600 bytes"},
		{"short/plain", func(f *os.File) io.Writer { return writerOnly{f} }, fromFd, context.Background, 400 << 10, io.ErrUnexpectedEOF, "content ended after 307200 of 409600 bytes"},
		{"short/read", func(f *os.File) io.Writer { return &fileSink{f: f} }, inMemory, context.Background, 400 << 10, io.ErrUnexpectedEOF, "content ended after 307200 of 409600 bytes"},
		{"cancelled", func(f *os.File) io.Writer { return &fileSink{f: f} }, fromFd, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, 300 << 10, context.Canceled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := unix.Open(src, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			bw := bufio.NewWriterSize(tc.sink(out), copyBufSize)
			w := NewWriter(bw, FormatOverlay)
			hdr := &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: tc.size, Format: tar.FormatPAX}
			err = w.WriteEntry(&Entry{Path: "f", Header: hdr}, ctxReader{ctx: tc.ctx(), r: tc.content(fd)})
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("WriteEntry: %v, want %v (%q)", err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}
