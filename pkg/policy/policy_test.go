package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// fixture builds base/{allow,views,allow-evil,outside} with the same
// hostile entries inside allow and views (see populate) and returns base and
// a policy allowing snapshots in base/allow and views in base/views.
func fixture(t *testing.T) (string, *Policy) {
	t.Helper()
	base := t.TempDir()
	mk := func(fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"allow-evil", "outside/dir"} {
		mk(func() error { return os.MkdirAll(filepath.Join(base, d), 0o700) })
	}
	for name, content := range map[string]string{
		"allow-evil/snap.tar": "evil",
		"outside/secret":      "secret",
	} {
		mk(func() error { return os.WriteFile(filepath.Join(base, name), []byte(content), 0o600) })
	}
	allow, views := filepath.Join(base, "allow"), filepath.Join(base, "views")
	populate(t, base, allow)
	populate(t, base, views)
	return base, &Policy{AllowDirs: []string{allow}, ViewDirs: []string{views}}
}

// populate makes dir (mode 0700) with files, directories, symlinks in and
// out of it, a FIFO and a socket.
func populate(t *testing.T, base, dir string) {
	t.Helper()
	mk := func(fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"sub", "dir"} {
		mk(func() error { return os.MkdirAll(filepath.Join(dir, d), 0o700) })
	}
	for name, content := range map[string]string{"snap.tar": "inside", "sub/snap.tar": "sub"} {
		mk(func() error { return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600) })
	}
	for name, target := range map[string]string{
		"link-in":       "snap.tar",
		"sub/link-up":   "../snap.tar",
		"link-out":      "../outside/secret",
		"link-abs":      filepath.Join(base, "outside/secret"),
		"link-abs-in":   filepath.Join(dir, "snap.tar"),
		"dir-link-out":  "../outside",
		"dir-link-in":   "dir",
		"loop":          "loop",
		"dangling":      "nothing-here",
		"link-fifo":     "fifo",
		"link-dir-self": ".",
		"sub/link-top":  "..",
	} {
		mk(func() error { return os.Symlink(target, filepath.Join(dir, name)) })
	}
	mk(func() error { return unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600) })
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// withTimeout fails the test instead of hanging when fn blocks (a FIFO).
func withTimeout(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("blocked (opened a FIFO?)")
	}
}

func TestOpenRead(t *testing.T) {
	base, p := fixture(t)
	allow := p.AllowDirs[0]
	tests := []struct {
		name, path string
		want       string // content; "" means an error is expected
		notAllowed bool   // the error wraps ErrNotAllowed
		errIs      error  // the error wraps this too
	}{
		{name: "plain", path: allow + "/snap.tar", want: "inside"},
		{name: "nested", path: allow + "/sub/snap.tar", want: "sub"},
		{name: "unclean but inside", path: allow + "//sub/..//snap.tar", want: "inside"},
		{name: "symlink inside", path: allow + "/link-in", want: "inside"},
		{name: "symlink up but inside", path: allow + "/sub/link-up", want: "inside"},
		{name: "through symlinked dir inside", path: allow + "/link-dir-self/snap.tar", want: "inside"},
		{name: "empty", path: "", notAllowed: true},
		{name: "relative", path: "allow/snap.tar", notAllowed: true},
		{name: "dot relative", path: "./snap.tar", notAllowed: true},
		{name: "NUL byte", path: allow + "/snap.tar\x00", notAllowed: true},
		{name: "outside", path: base + "/outside/secret", notAllowed: true},
		{name: "etc shadow", path: "/etc/shadow", notAllowed: true},
		{name: "dotdot out", path: allow + "/../outside/secret", notAllowed: true},
		{name: "dotdot deep out", path: allow + "/sub/../../outside/secret", notAllowed: true},
		{name: "sibling with common prefix", path: base + "/allow-evil/snap.tar", notAllowed: true},
		{name: "allow dir itself", path: allow, notAllowed: true},
		{name: "allow dir with slash", path: allow + "/", notAllowed: true},
		{name: "allow dir with dot", path: allow + "/.", notAllowed: true},
		{name: "root", path: "/", notAllowed: true},
		{name: "relative symlink out", path: allow + "/link-out", notAllowed: true},
		{name: "absolute symlink out", path: allow + "/link-abs", notAllowed: true},
		{name: "absolute symlink back inside", path: allow + "/link-abs-in", notAllowed: true},
		{name: "through symlinked dir out", path: allow + "/dir-link-out/secret", notAllowed: true},
		{name: "directory", path: allow + "/dir", notAllowed: true},
		{name: "symlink to directory", path: allow + "/dir-link-in", notAllowed: true},
		{name: "fifo", path: allow + "/fifo", notAllowed: true},
		{name: "symlink to fifo", path: allow + "/link-fifo", notAllowed: true},
		{name: "socket", path: allow + "/sock", notAllowed: true},
		{name: "missing", path: allow + "/missing.tar", errIs: fs.ErrNotExist},
		{name: "dangling symlink", path: allow + "/dangling", errIs: fs.ErrNotExist},
		{name: "symlink loop", path: allow + "/loop", errIs: unix.ELOOP},
		{name: "file as directory", path: allow + "/snap.tar/x", errIs: unix.ENOTDIR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *os.File
			var err error
			withTimeout(t, func() { f, err = p.OpenRead(tt.path) })
			if tt.want != "" {
				if err != nil {
					t.Fatalf("OpenRead(%q): %v", tt.path, err)
				}
				defer f.Close()
				b, err := io.ReadAll(f)
				if err != nil || string(b) != tt.want {
					t.Fatalf("read %q, %v; want %q", b, err, tt.want)
				}
				if fl, _ := fcntlFlags(f); fl&unix.O_NONBLOCK != 0 {
					t.Error("file left in non-blocking mode")
				}
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("OpenRead(%q) succeeded, want an error", tt.path)
			}
			if got := errors.Is(err, ErrNotAllowed); got != tt.notAllowed {
				t.Errorf("errors.Is(%v, ErrNotAllowed) = %v, want %v", err, got, tt.notAllowed)
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("error %v does not wrap %v", err, tt.errIs)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.path)) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
}

func fcntlFlags(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fl int
	var ferr error
	if err := rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
		return 0, err
	}
	return fl, ferr
}

func TestOpenReadDevice(t *testing.T) {
	testutil.RequireRoot(t)
	_, p := fixture(t)
	dev := filepath.Join(p.AllowDirs[0], "null")
	if err := unix.Mknod(dev, unix.S_IFCHR|0o600, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	if f, err := p.OpenRead(dev); !errors.Is(err, ErrNotAllowed) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenRead(char device) = %v, want ErrNotAllowed", err)
	}
}

func TestErrorText(t *testing.T) {
	p := Default()
	_, err := p.OpenRead("/etc/shadow")
	got := fmt.Errorf("restore source %w", err).Error()
	want := `restore source "/etc/shadow": not inside an allowed directory (/var/lib/ocisnap): policy: path not allowed`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestOpenViewDir(t *testing.T) {
	base, p := fixture(t)
	allow := p.ViewDirs[0]
	tests := []struct {
		name, path string
		ok         bool
	}{
		{"dir", allow + "/dir", true},
		{"nested", allow + "/sub", true},
		{"symlink to dir inside", allow + "/dir-link-in", true},
		{"view dir itself", allow, false},
		{"view dir via symlink to self", allow + "/link-dir-self", false},
		{"view dir via dotdot symlink", allow + "/sub/link-top", false},
		{"regular file", allow + "/snap.tar", false},
		{"fifo", allow + "/fifo", false},
		{"symlink to dir outside", allow + "/dir-link-out", false},
		{"through symlink out", allow + "/dir-link-out/dir", false},
		{"outside", base + "/outside/dir", false},
		{"dotdot", allow + "/../outside/dir", false},
		{"relative", "dir", false},
		{"missing", allow + "/nope", false},
		{"dir in the allowed snapshot directory", p.AllowDirs[0] + "/dir", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *os.File
			var err error
			withTimeout(t, func() { f, err = p.OpenViewDir(tt.path) })
			if err == nil {
				defer f.Close()
				if fi, err := f.Stat(); err != nil || !fi.IsDir() {
					t.Fatalf("OpenViewDir(%q) returned a non-directory (%v)", tt.path, err)
				}
			}
			if (err == nil) != tt.ok {
				t.Fatalf("OpenViewDir(%q) error = %v, want ok=%v", tt.path, err, tt.ok)
			}
		})
	}
}

func TestOpenParent(t *testing.T) {
	base, p := fixture(t)
	allow := p.AllowDirs[0]
	tests := []struct {
		name, path string
		wantDir    string // host path of the parent; "" means refused
		notAllowed bool
	}{
		{name: "new file", path: allow + "/new.tar", wantDir: allow},
		{name: "existing file", path: allow + "/snap.tar", wantDir: allow},
		{name: "missing parents", path: allow + "/a/b/c/new.tar", wantDir: allow + "/a/b/c"},
		{name: "existing nested", path: allow + "/sub/snap.tar", wantDir: allow + "/sub"},
		{name: "parent via symlink inside", path: allow + "/dir-link-in/new.tar", wantDir: allow + "/dir"},
		{name: "destination is a directory", path: allow + "/dir", notAllowed: true},
		{name: "destination is a symlink", path: allow + "/link-in", notAllowed: true},
		{name: "destination is a dangling symlink", path: allow + "/dangling", notAllowed: true},
		{name: "destination is a symlink out", path: allow + "/link-out", notAllowed: true},
		{name: "destination is a fifo", path: allow + "/fifo", notAllowed: true},
		{name: "destination is a socket", path: allow + "/sock", notAllowed: true},
		{name: "parent is a symlink out", path: allow + "/dir-link-out/new.tar", notAllowed: true},
		{name: "missing dir under a symlink out", path: allow + "/dir-link-out/made/new.tar", notAllowed: true},
		{name: "outside", path: base + "/outside/new.tar", notAllowed: true},
		{name: "dotdot", path: allow + "/../outside/new.tar", notAllowed: true},
		{name: "sibling prefix", path: base + "/allow-evil/new.tar", notAllowed: true},
		{name: "allow dir itself", path: allow, notAllowed: true},
		{name: "relative", path: "new.tar", notAllowed: true},
		{name: "parent is a file", path: allow + "/snap.tar/new.tar"},
		{name: "parent is a symlink loop", path: allow + "/loop/new.tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, b, err := p.OpenParent(tt.path)
			if tt.wantDir == "" {
				if err == nil {
					dir.Close()
					t.Fatalf("OpenParent(%q) succeeded, want an error", tt.path)
				}
				if tt.notAllowed && !errors.Is(err, ErrNotAllowed) {
					t.Errorf("error %v does not wrap ErrNotAllowed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenParent(%q): %v", tt.path, err)
			}
			defer dir.Close()
			if b != filepath.Base(tt.path) {
				t.Errorf("base = %q, want %q", b, filepath.Base(tt.path))
			}
			// The returned root is the parent: a file made in it appears there.
			probe := fmt.Sprintf(".probe-%d", time.Now().UnixNano())
			if err := dir.WriteFile(probe, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(tt.wantDir, probe)); err != nil {
				t.Errorf("parent is not %s: %v", tt.wantDir, err)
			}
			fi, err := os.Stat(tt.wantDir)
			if err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("parent %s: mode %v, %v; want no group/other bits", tt.wantDir, fi.Mode(), err)
			}
		})
	}
	// Nothing was created outside the allowed directory.
	if _, err := os.Lstat(filepath.Join(base, "outside/made")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a directory was created through a symlink out: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "outside/new.tar")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("outside/new.tar exists: %v", err)
	}
}

func TestMultipleAllowDirs(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(b, "s.tar"), []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Policy{AllowDirs: []string{"relative/ignored", a, b + "/"}}
	if err := p.Validate(); err == nil {
		t.Error("Validate accepted a relative allowed directory")
	}
	f, err := p.OpenRead(filepath.Join(b, "s.tar"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, bad := range []string{"relative/ignored/s.tar", filepath.Join(base, "c/s.tar"), b} {
		if err := p.Check(bad); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Check(%q) = %v, want ErrNotAllowed", bad, err)
		}
	}
	if err := (&Policy{}).Check("/var/lib/ocisnap/x"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("an empty policy allowed a path: %v", err)
	}
	if err := (&Policy{AllowDirs: []string{"/"}}).Check("/etc/x"); err != nil {
		t.Errorf("AllowDirs=[/]: %v", err)
	}
}

func TestDefault(t *testing.T) {
	p := Default()
	if len(p.AllowDirs) != 1 || p.AllowDirs[0] != DefaultAllowDir || len(p.ViewDirs) != 1 || p.ViewDirs[0] != DefaultViewDir ||
		p.AllowDevices || p.GVisorCompat ||
		p.MaxBytes <= 0 || p.MaxEntries <= 0 {
		t.Errorf("Default() = %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
}
