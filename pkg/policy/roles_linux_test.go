package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestRoles: snapshots and view sources each resolve only inside their own
// directories; a snapshot path inside a view directory is refused even when
// the flags overlap (which Validate refuses); a symlink from a view
// directory into the snapshot directory is refused.
func TestRoles(t *testing.T) {
	base, p := fixture(t)
	allow, views := p.AllowDirs[0], p.ViewDirs[0]
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(allow, "snap.tar"), filepath.Join(views, "to-snap-abs")))
	must(os.Symlink("../allow/snap.tar", filepath.Join(views, "to-snap-rel")))
	must(os.Symlink("../allow/dir", filepath.Join(views, "to-snapdir-rel")))
	must(os.Symlink("../views/snap.tar", filepath.Join(allow, "to-view-rel")))
	// An administrator's mistake: a snapshot directory that holds the view
	// directory. Each check still refuses the other role's paths.
	wide := &Policy{AllowDirs: []string{base}, ViewDirs: []string{views}}
	open := func(fn func(string) (*os.File, error)) func(string) error {
		return func(path string) error {
			f, err := fn(path)
			if err == nil {
				f.Close()
			}
			return err
		}
	}
	parent := func(p *Policy) func(string) error {
		return func(path string) error {
			d, _, err := p.OpenParent(path)
			if err == nil {
				d.Close()
			}
			return err
		}
	}
	tests := []struct {
		name, path string
		op         func(string) error
		ok         bool
		say        string // the refusal says this
	}{
		{"view file in the view dir", views + "/snap.tar", open(p.OpenViewFile), true, ""},
		{"view dir in the view dir", views + "/dir", open(p.OpenViewDir), true, ""},
		{"view file in the allow dir", allow + "/snap.tar", open(p.OpenViewFile), false, "inside the snapshot directory " + allow},
		{"view dir in the allow dir", allow + "/dir", open(p.OpenViewDir), false, "inside the snapshot directory"},
		{"view check in the allow dir", allow + "/snap.tar", p.CheckView, false, "view sources must be in a view directory"},
		{"view file outside", base + "/outside/secret", open(p.OpenViewFile), false, "not inside a view directory (" + views + ")"},
		{"view file through abs symlink into the allow dir", views + "/to-snap-abs", open(p.OpenViewFile), false, "leads out of the view directory"},
		{"view file through rel symlink into the allow dir", views + "/to-snap-rel", open(p.OpenViewFile), false, "leads out of the view directory"},
		{"view dir through symlink into the allow dir", views + "/to-snapdir-rel", open(p.OpenViewDir), false, "leads out"},
		{"view file by dotdot into the allow dir", views + "/../allow/snap.tar", open(p.OpenViewFile), false, "snapshot directory"},
		{"restore from the view dir", views + "/snap.tar", open(p.OpenRead), false, "inside the view directory " + views},
		{"check restore in the view dir", views + "/snap.tar", p.Check, false, "snapshots are never read from or written to a view directory"},
		{"export into the view dir", views + "/boot.erofs", parent(p), false, "inside the view directory"},
		{"export over a view image", views + "/snap.tar", parent(p), false, "inside the view directory"},
		{"export into a new dir in the view dir", views + "/new/x.tar", parent(p), false, "inside the view directory"},
		{"export to the view dir itself", views, parent(p), false, "inside the view directory"},
		{"restore through symlink into the view dir", allow + "/to-view-rel", open(p.OpenRead), false, "leads out of the allowed directory"},
		{"overlapping flags: restore from the view dir", views + "/snap.tar", open(wide.OpenRead), false, "inside the view directory"},
		{"overlapping flags: export into the view dir", views + "/new/x.tar", parent(wide), false, "inside the view directory"},
		{"overlapping flags: view file", views + "/snap.tar", open(wide.OpenViewFile), false, "inside the snapshot directory " + base},
		{"no view dir configured", views + "/snap.tar", open((&Policy{AllowDirs: []string{allow}}).OpenViewFile), false, "no view directory is configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			withTimeout(t, func() { err = tt.op(tt.path) })
			if tt.ok {
				if err != nil {
					t.Fatalf("%s: %v", tt.path, err)
				}
				return
			}
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("%s: error %v, want ErrNotAllowed", tt.path, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.path)) || !strings.Contains(err.Error(), tt.say) {
				t.Errorf("error %q does not name the path and say %q", err, tt.say)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(views, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an export made a directory in the view directory: %v", err)
	}
}

// TestValidateOverlap: view and snapshot directories that are equal or one
// inside the other, lexically or once symlinks are resolved, are refused
// with an error that names both; apart, they are valid.
func TestValidateOverlap(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{"snaps/views", "other", "ocisnap", "ocisnap-views"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"views-link":  filepath.Join(base, "snaps/views"), // a view dir that is in the snapshots
		"snaps-link":  filepath.Join(base, "snaps"),
		"parent-link": filepath.Join(base, "snaps"), // views made later below it
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	b := func(p string) string { return filepath.Join(base, p) }
	tests := []struct {
		name         string
		allow, views []string
		bad          bool
		nameA, nameV string // the directories the error names
	}{
		{"apart", []string{b("ocisnap")}, []string{b("ocisnap-views")}, false, "", ""},
		{"defaults", []string{DefaultAllowDir}, []string{DefaultViewDir}, false, "", ""},
		{"several apart", []string{b("ocisnap"), b("other")}, []string{b("ocisnap-views"), b("snaps")}, false, "", ""},
		{"equal", []string{b("ocisnap")}, []string{b("ocisnap")}, true, b("ocisnap"), b("ocisnap")},
		{"equal unclean", []string{b("ocisnap") + "/"}, []string{b("other/../ocisnap/.")}, true, b("ocisnap") + "/", b("other/../ocisnap/.")},
		{"view inside allow", []string{b("snaps")}, []string{b("snaps/views")}, true, b("snaps"), b("snaps/views")},
		{"allow inside view", []string{b("snaps/views")}, []string{b("snaps")}, true, b("snaps/views"), b("snaps")},
		{"allow is /", []string{"/"}, []string{b("ocisnap-views")}, true, "/", b("ocisnap-views")},
		{"second of several", []string{b("other"), b("snaps")}, []string{b("ocisnap-views"), b("snaps/views/x")}, true, b("snaps"), b("snaps/views/x")},
		{"view dir is a symlink into allow", []string{b("snaps")}, []string{b("views-link")}, true, b("snaps"), b("views-link")},
		{"allow dir is a symlink over view", []string{b("snaps-link")}, []string{b("snaps/views")}, true, b("snaps-link"), b("snaps/views")},
		{"missing view dir below a symlink into allow", []string{b("snaps")}, []string{b("parent-link/not-yet/views")}, true, b("snaps"), b("parent-link/not-yet/views")},
		{"missing dirs apart", []string{b("none/a")}, []string{b("none/b")}, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{AllowDirs: tt.allow, ViewDirs: tt.views}
			err := p.Validate()
			if !tt.bad {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrOverlap) {
				t.Fatalf("Validate = %v, want ErrOverlap", err)
			}
			for _, d := range []string{tt.nameA, tt.nameV} {
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", d)) {
					t.Errorf("error %q does not name %s", err, d)
				}
			}
		})
	}
	if err := (&Policy{ViewDirs: []string{"views"}}).Validate(); err == nil || !strings.Contains(err.Error(), `"views"`) {
		t.Errorf("relative view directory: %v", err)
	}
}

// TestViewOwnership: a file: image or dir: source must be owned by root
// (or the hook's uid) and not writable by group or others; FIFOs, sockets
// and devices are refused. The checks are made on the opened descriptor.
func TestViewOwnership(t *testing.T) {
	testutil.RequireRoot(t)
	_, p := fixture(t)
	views := p.ViewDirs[0]
	mkfile := func(name string, mode os.FileMode, uid int) string {
		t.Helper()
		path := filepath.Join(views, name)
		if err := os.WriteFile(path, []byte("image"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(path, uid, 0); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mkdir := func(name string, mode os.FileMode, uid int) string {
		t.Helper()
		path := filepath.Join(views, name)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(path, uid, 0); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dev := filepath.Join(views, "null")
	if err := unix.Mknod(dev, unix.S_IFCHR|0o600, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	blk := filepath.Join(views, "blk")
	if err := unix.Mknod(blk, unix.S_IFBLK|0o600, 7<<8|0); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// A tenant's file behind a root-owned symlink: the target's owner counts.
	tenant := mkfile("tenant.img", 0o644, 1000)
	must(os.Symlink("tenant.img", filepath.Join(views, "link-to-tenant")))
	tests := []struct {
		name, path string
		dir, ok    bool
		say        string
	}{
		{"root 0644", mkfile("ok.img", 0o644, 0), false, true, ""},
		{"root 0400", mkfile("ro.img", 0o400, 0), false, true, ""},
		{"root 0755 (executable bits do not matter)", mkfile("x.img", 0o755, 0), false, true, ""},
		{"owned by uid 1000", tenant, false, false, "owned by uid 1000"},
		{"symlink to a file owned by uid 1000", filepath.Join(views, "link-to-tenant"), false, false, "owned by uid 1000"},
		{"group-writable", mkfile("g.img", 0o664, 0), false, false, "writable by group or others (mode 0664)"},
		{"other-writable", mkfile("o.img", 0o646, 0), false, false, "writable by group or others"},
		{"world-writable setuid", mkfile("s.img", os.ModeSetuid|0o666, 0), false, false, "writable by group or others"},
		{"fifo", filepath.Join(views, "fifo"), false, false, "not a regular file (a named pipe)"},
		{"socket", filepath.Join(views, "sock"), false, false, "not a regular file (a socket)"},
		{"char device", dev, false, false, "not a regular file (a character device)"},
		{"block device", blk, false, false, "not a regular file (a block device)"},
		{"dir root 0755", mkdir("d-ok", 0o755, 0), true, true, ""},
		{"dir owned by uid 1000", mkdir("d-user", 0o755, 1000), true, false, "owned by uid 1000"},
		{"dir group-writable", mkdir("d-g", 0o775, 0), true, false, "writable by group or others"},
		{"dir sticky world-writable", mkdir("d-tmp", os.ModeSticky|0o777, 0), true, false, "writable by group or others"},
		{"dir is a file", filepath.Join(views, "ok.img"), true, false, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *os.File
			var err error
			withTimeout(t, func() {
				if tt.dir {
					f, err = p.OpenViewDir(tt.path)
				} else {
					f, err = p.OpenViewFile(tt.path)
				}
			})
			if tt.ok {
				if err != nil {
					t.Fatalf("%s: %v", tt.path, err)
				}
				f.Close()
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("%s: opened, want a refusal", tt.path)
			}
			if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.path)) ||
				!strings.Contains(err.Error(), tt.say) {
				t.Errorf("error %q: want ErrNotAllowed naming the path and saying %q", err, tt.say)
			}
		})
	}
	// Snapshots have no owner rule: an export is root's 0600 file, a
	// restore source may be anyone's in the allowed directory.
	snap := filepath.Join(p.AllowDirs[0], "user.tar")
	must(os.WriteFile(snap, nil, 0o666))
	must(os.Chown(snap, 1000, 1000))
	f, err := p.OpenRead(snap)
	if err != nil {
		t.Fatalf("OpenRead of a user's snapshot: %v", err)
	}
	f.Close()
}
