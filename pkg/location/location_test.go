package location

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// The test binary doubles as a writer process that can be killed mid-write.
const helperEnv = "OCISNAP_LOCATION_TEST_WRITER"

func TestMain(m *testing.M) {
	if dest := os.Getenv(helperEnv); dest != "" {
		writer(dest)
		return
	}
	os.Exit(m.Run())
}

// writer starts a snapshot of dest, writes more than the buffer (so that
// bytes reach the temporary file), says "ready" and waits to be killed.
func writer(dest string) {
	p := &policy.Policy{AllowDirs: []string{filepath.Dir(dest)}}
	sink, err := ParseSink(dest, p)
	if err == nil {
		var pend Pending
		if pend, err = sink.Create(context.Background()); err == nil {
			_, err = pend.Write(bytes.Repeat([]byte("partial "), 2*bufSize/8))
		}
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(2)
}

// startWriter runs writer for dest and returns once it holds its temp file.
func startWriter(t *testing.T, dest string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dest)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("writer: %q", line)
	}
	return cmd
}

func setup(t *testing.T) (allow string, p *policy.Policy) {
	t.Helper()
	allow = filepath.Join(t.TempDir(), "allow")
	if err := os.Mkdir(allow, 0o700); err != nil {
		t.Fatal(err)
	}
	return allow, &policy.Policy{AllowDirs: []string{allow}}
}

func temps(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, ".*"+atomicfile.TempInfix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func assertContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("%s holds %.40q (%d bytes), want %.40q (%d bytes)", path, b, len(b), want, len(want))
	}
}

func mustCreate(t *testing.T, p *policy.Policy, dest string) Pending {
	t.Helper()
	sink, err := ParseSink(dest, p)
	if err != nil {
		t.Fatal(err)
	}
	pend, err := sink.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pend
}

func TestCommit(t *testing.T) {
	allow, p := setup(t)
	dest := filepath.Join(allow, "a/b/snap.tar")
	big := strings.Repeat("0123456789abcdef", 3*bufSize/16+7) // crosses the buffer
	for _, content := range []string{"first", big, ""} {
		pend := mustCreate(t, p, dest)
		if got := temps(t, filepath.Dir(dest)); len(got) != 1 {
			t.Fatalf("temporary files while writing: %v", got)
		}
		if _, err := io.WriteString(pend, content); err != nil {
			t.Fatal(err)
		}
		if err := pend.Commit(); err != nil {
			t.Fatal(err)
		}
		assertContent(t, dest, content)
		if got := temps(t, filepath.Dir(dest)); len(got) != 0 {
			t.Fatalf("temporary files after Commit: %v", got)
		}
		// Idempotent, and Abort after Commit keeps the snapshot.
		if err := pend.Commit(); err != nil {
			t.Errorf("second Commit: %v", err)
		}
		if err := pend.Abort(); err != nil {
			t.Errorf("Abort after Commit: %v", err)
		}
		if _, err := pend.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Write after Commit = %v, want os.ErrClosed", err)
		}
		assertContent(t, dest, content)
	}
	fi, err := os.Stat(dest)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestReadFrom: file content handed to ReadFrom lands after what was
// written and buffered before it, and before what comes after.
func TestReadFrom(t *testing.T) {
	allow, p := setup(t)
	dest := filepath.Join(allow, "rf.tar")
	src := filepath.Join(t.TempDir(), "content")
	body := strings.Repeat("content!", bufSize/4+3)
	if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pend := mustCreate(t, p, dest)
	rf, ok := pend.(io.ReaderFrom)
	if !ok {
		t.Fatal("the file sink's Pending is no io.ReaderFrom: file content would go through user memory")
	}
	io.WriteString(pend, "head")
	n, err := rf.ReadFrom(io.LimitReader(f, int64(len(body)-5)))
	if err != nil || n != int64(len(body)-5) {
		t.Fatalf("ReadFrom: %d, %v", n, err)
	}
	io.WriteString(pend, "tail")
	if err := pend.Commit(); err != nil {
		t.Fatal(err)
	}
	assertContent(t, dest, "head"+body[:len(body)-5]+"tail")
	if _, err := rf.ReadFrom(strings.NewReader("x")); err == nil {
		t.Error("ReadFrom after Commit succeeded")
	}
}

func TestSource(t *testing.T) {
	allow, p := setup(t)
	path := filepath.Join(allow, "s.tar")
	if err := os.WriteFile(path, []byte("snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := ParseSource(path, p)
	if err != nil {
		t.Fatal(err)
	}
	if src.String() != path {
		t.Errorf("String() = %q", src.String())
	}
	snap, err := src.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := snap.Each(context.Background(), func(_ int, _ Layer, r io.Reader) error {
		b, err = io.ReadAll(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	if string(b) != "snapshot" {
		t.Errorf("read %q", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Open(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Open(cancelled) = %v", err)
	}
	if _, err := ParseSource("/etc/shadow", p); !errors.Is(err, policy.ErrNotAllowed) {
		t.Errorf("ParseSource(/etc/shadow) = %v", err)
	}
}

// TestAbort: whatever happens before Commit, the destination holds the old
// snapshot, whole, and no temporary file remains once aborted.
func TestAbort(t *testing.T) {
	allow, p := setup(t)
	dest := filepath.Join(allow, "snap.tar")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("abort", func(t *testing.T) {
		pend := mustCreate(t, p, dest)
		io.WriteString(pend, strings.Repeat("new", bufSize))
		for i := 0; i < 2; i++ {
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
		assertContent(t, dest, "old")
		if got := temps(t, allow); len(got) != 0 {
			t.Errorf("temporary files after Abort: %v", got)
		}
	})
	t.Run("panic mid-write", func(t *testing.T) {
		pend := mustCreate(t, p, dest)
		func() {
			defer func() { recover() }()
			io.WriteString(pend, strings.Repeat("new", bufSize))
			panic("writer failed")
		}()
		assertContent(t, dest, "old")
		pend.Abort()
		if got := temps(t, allow); len(got) != 0 {
			t.Errorf("temporary files after Abort: %v", got)
		}
	})
	t.Run("failed commit", func(t *testing.T) {
		other := filepath.Join(allow, "becomes-a-dir")
		pend := mustCreate(t, p, other)
		io.WriteString(pend, "new")
		// The destination turns into a non-empty directory before Commit:
		// the rename fails, and the temporary file goes.
		if err := os.MkdirAll(filepath.Join(other, "child"), 0o700); err != nil {
			t.Fatal(err)
		}
		err := pend.Commit()
		if err == nil {
			t.Fatal("Commit over a directory succeeded")
		}
		if !strings.Contains(err.Error(), other) {
			t.Errorf("error %q does not name the destination", err)
		}
		if err2 := pend.Commit(); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("second Commit = %v, want %v", err2, err)
		}
		if err := pend.Abort(); err != nil {
			t.Errorf("Abort after failed Commit: %v", err)
		}
		if got := temps(t, allow); len(got) != 0 {
			t.Errorf("temporary files after failed Commit: %v", got)
		}
		if fi, err := os.Stat(filepath.Join(other, "child")); err != nil || !fi.IsDir() {
			t.Errorf("directory at the destination changed: %v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		sink, _ := ParseSink(dest, p)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := sink.Create(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Create = %v", err)
		}
	})
	assertContent(t, dest, "old")
}

// TestKilledWriter: a writer killed mid-write (SIGKILL at a hook timeout)
// leaves the old snapshot and a temporary file nobody holds; the next
// Create, or CleanStaleTemps, removes it.
func TestKilledWriter(t *testing.T) {
	allow, p := setup(t)
	dest := filepath.Join(allow, "snap.tar")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	kill := func() string {
		t.Helper()
		cmd := startWriter(t, dest)
		got := temps(t, allow)
		if len(got) != 1 {
			t.Fatalf("temporary files of the writer: %v", got)
		}
		if fi, err := os.Stat(got[0]); err != nil || fi.Size() == 0 {
			t.Fatalf("temporary file empty: %v", err)
		}
		// Still alive: neither the cleaner nor a new Create touches it.
		if removed, err := CleanStaleTemps(allow); err != nil || len(removed) != 0 {
			t.Fatalf("CleanStaleTemps removed a live writer's file: %v, %v", removed, err)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		assertContent(t, dest, "old")
		return got[0]
	}

	stale := kill()
	pend := mustCreate(t, p, dest)
	if _, err := os.Lstat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create kept the dead writer's %s: %v", stale, err)
	}
	pend.Abort()

	stale = kill()
	removed, err := CleanStaleTemps(allow)
	if err != nil || len(removed) != 1 || removed[0] != stale {
		t.Errorf("CleanStaleTemps = %v, %v; want [%s]", removed, err, stale)
	}
	assertContent(t, dest, "old")
}

// TestLiveTempKept: a temporary file whose flock is held (by a live
// writer) survives a concurrent Create and CleanStaleTemps; an unlocked one
// does not, whatever destination it was for. Files that only look similar
// are never touched.
func TestLiveTempKept(t *testing.T) {
	allow, p := setup(t)
	dest := filepath.Join(allow, "snap.tar")
	a := mustCreate(t, p, dest)
	io.WriteString(a, "from a")

	held := filepath.Join(allow, ".snap.tar"+atomicfile.TempInfix+"0123456789abcdef")
	unheld := filepath.Join(allow, ".snap.tar"+atomicfile.TempInfix+"fedcba9876543210")
	other := filepath.Join(allow, ".other.tar"+atomicfile.TempInfix+"aaaaaaaaaaaaaaaa")
	lookalikes := []string{
		filepath.Join(allow, ".snap.tar"+atomicfile.TempInfix+"short"),
		filepath.Join(allow, ".snap.tar"+atomicfile.TempInfix+"0123456789ABCDEF"),
		filepath.Join(allow, "snap.tar"+atomicfile.TempInfix+"0123456789abcdef"),
		filepath.Join(allow, "snap.tar"),
	}
	for _, f := range append([]string{held, unheld, other}, lookalikes...) {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hf, err := os.Open(held) // a second open file description: its own lock
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if err := syscall.Flock(int(hf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	b := mustCreate(t, p, dest)
	exists := func(f string) bool { _, err := os.Lstat(f); return err == nil }
	if !exists(held) || exists(unheld) || exists(other) {
		t.Errorf("after Create: held %v (want true), unheld %v (want false), other destination's dead temp %v (want false)",
			exists(held), exists(unheld), exists(other))
	}
	if removed, err := CleanStaleTemps(allow); err != nil || len(removed) != 0 {
		t.Errorf("CleanStaleTemps = %v, %v; want nothing left to remove", removed, err)
	}
	for _, f := range append([]string{held}, lookalikes...) {
		if !exists(f) {
			t.Errorf("%s was removed", f)
		}
	}
	// Both live writers still commit; the last one wins.
	io.WriteString(b, "from b")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	assertContent(t, dest, "from a")
}

// TestConcurrent: writers racing to the same destination end with one
// complete snapshot, exactly one writer's.
func TestConcurrent(t *testing.T) {
	allow, p := setup(t)
	dest := filepath.Join(allow, "snap.tar")
	const n = 8
	contents := make([]string, n)
	for i := range contents {
		contents[i] = fmt.Sprintf("writer %d\n", i) + strings.Repeat(string(rune('a'+i)), 3*bufSize+i)
	}
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sink, err := ParseSink(dest, p)
				if err != nil {
					t.Error(err)
					return
				}
				pend, err := sink.Create(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				for off := 0; off < len(contents[i]); off += 4096 {
					if _, err := io.WriteString(pend, contents[i][off:min(off+4096, len(contents[i]))]); err != nil {
						t.Error(err)
						pend.Abort()
						return
					}
				}
				if err := pend.Commit(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range contents {
			found = found || string(got) == c
		}
		if !found {
			t.Fatalf("round %d: the snapshot is no writer's (%d bytes, starts %.20q)", round, len(got), got)
		}
		if tmp := temps(t, allow); len(tmp) != 0 {
			t.Fatalf("temporary files left: %v", tmp)
		}
	}
}

func TestHostileDestinations(t *testing.T) {
	allow, p := setup(t)
	outside := filepath.Join(filepath.Dir(allow), "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("victim"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(allow, "inside"), []byte("inside"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"dir-out":     outside,
		"dir-out-rel": "../outside",
		"link-victim": "../outside/victim",
		"link-inside": "inside",
	} {
		if err := os.Symlink(target, filepath.Join(allow, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(allow, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ref   string
		unsupported bool
	}{
		{name: "outside", ref: filepath.Join(outside, "x.tar")},
		{name: "etc", ref: "/etc/ocisnap.tar"},
		{name: "dotdot", ref: allow + "/../outside/x.tar"},
		{name: "allow dir itself", ref: allow},
		{name: "through absolute symlink out", ref: allow + "/dir-out/x.tar"},
		{name: "through relative symlink out", ref: allow + "/dir-out-rel/x.tar"},
		{name: "new dirs through symlink out", ref: allow + "/dir-out/new/x.tar"},
		{name: "destination symlink out", ref: allow + "/link-victim"},
		{name: "destination symlink inside", ref: allow + "/link-inside"},
		{name: "destination directory", ref: allow + "/adir"},
		{name: "relative", ref: "snap.tar", unsupported: true},
		{name: "empty", ref: "", unsupported: true},
		{name: "registry", ref: "quay.io/me/snap:latest", unsupported: true},
		{name: "registry with scheme", ref: "oci://quay.io/me/snap:latest", unsupported: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink, err := ParseSink(tt.ref, p)
			if err == nil {
				var pend Pending
				if pend, err = sink.Create(context.Background()); err == nil {
					pend.Abort()
					t.Fatalf("Create(%q) succeeded", tt.ref)
				}
			}
			if tt.unsupported {
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("error %v does not wrap ErrUnsupported", err)
				}
				if tt.ref != "" && !strings.Contains(err.Error(), "docker://") && !strings.Contains(err.Error(), "oci:/abs/dir") {
					t.Errorf("error %q does not show the location forms", err)
				}
			} else if !errors.Is(err, policy.ErrNotAllowed) {
				t.Errorf("error %v does not wrap policy.ErrNotAllowed", err)
			}
			if _, err := ParseSource(tt.ref, p); err == nil && tt.unsupported {
				t.Error("ParseSource accepted it")
			}
		})
	}
	assertContent(t, filepath.Join(outside, "victim"), "victim")
	assertContent(t, filepath.Join(allow, "inside"), "inside")
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("files created outside: %v", ents)
	}
	if got := temps(t, allow); len(got) != 0 {
		t.Errorf("temporary files left: %v", got)
	}
}

// TestCheckRedirect: a registry may redirect a blob to another public
// host (its blob store) or within itself, never to an address of the
// node or its networks, whatever the form of the address.
func TestCheckRedirect(t *testing.T) {
	from, _ := http.NewRequest(http.MethodGet, "https://registry.example.com:5000/v2/r/blobs/sha256:0", nil)
	for host, ok := range map[string]bool{
		"blobs.example.net":    true,
		"203.0.113.7":          true,
		"[2001:db8::1]":        true,
		"registry.example.com": true, // the same host, another port
		"127.0.0.1":            false,
		"10.1.2.3":             false,
		"192.168.0.1":          false,
		"169.254.169.254":      false,
		"[::1]":                false,
		"[::ffff:127.0.0.1]":   false,
		"[fe80::1%25eth0]":     false,
		"0.0.0.0":              false,
		"0x7f.1":               false,
		"2130706433":           false,
		"012.1.2.3":            false, // octal: 10.1.2.3
		"cafe.de":              true,  // a name, not an address
		"a1b2.cc":              true,
	} {
		to, err := http.NewRequest(http.MethodGet, "https://"+host+":443/blob", nil)
		if err != nil {
			t.Fatal(err)
		}
		err = checkRedirect(to, []*http.Request{from})
		if (err == nil) != ok {
			t.Errorf("redirect to %s: err %v, want allowed %v", host, err, ok)
		}
	}
	loopback, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:5000/v2/r/blobs/sha256:0", nil)
	again, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:5001/blob", nil)
	if err := checkRedirect(again, []*http.Request{loopback}); err != nil {
		t.Errorf("a registry on loopback redirecting to itself: %v", err)
	}
}
