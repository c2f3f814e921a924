package overlay

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Mount table lines in the shapes real mounters produce. Paths under
// /nonexistent-ocisnap-test do not exist, so absolute ones are returned as
// given (see resolver.resolve).
const (
	// podman 4.3.1 + runc, rootful, kernel 6.18 (captured; root renamed).
	podmanLine = `47 42 0:40 / /nonexistent-ocisnap-test/storage/overlay/c52d6d965cd1/merged rw,relatime - overlay overlay ` +
		`rw,lowerdir=/nonexistent-ocisnap-test/storage/overlay/l/O4UKRPFK62YYQYXPO4MI5EQZX7,` +
		`upperdir=/nonexistent-ocisnap-test/storage/overlay/c52d6d965cd1/diff,` +
		`workdir=/nonexistent-ocisnap-test/storage/overlay/c52d6d965cd1/work,uuid=on,fsync=volatile`
	// containerd overlay snapshotter: absolute snapshot dirs, optional fields.
	containerdLine = `1532 1201 0:612 / /nonexistent-ocisnap-test/containerd/k8s.io/8f1e/rootfs rw,relatime shared:822 master:1 - overlay overlay ` +
		`rw,lowerdir=/nonexistent-ocisnap-test/snapshots/12/fs:/nonexistent-ocisnap-test/snapshots/11/fs:/nonexistent-ocisnap-test/snapshots/3/fs,` +
		`upperdir=/nonexistent-ocisnap-test/snapshots/13/fs,workdir=/nonexistent-ocisnap-test/snapshots/13/work,index=off`
	// new mount API (fsconfig), as kernel 6.18 shows it (captured; root renamed).
	newAPILine = `46 27 0:39 / /nonexistent-ocisnap-test/c1/merged rw,relatime - overlay none ` +
		`rw,lowerdir+=/nonexistent-ocisnap-test/l/AAA,lowerdir+=/nonexistent-ocisnap-test/c:1/diff,` +
		`datadir+=/nonexistent-ocisnap-test/l/BBB,upperdir=/nonexistent-ocisnap-test/c1/diff,workdir=/nonexistent-ocisnap-test/c1/work`
	// escapes: space in the mountpoint and upper, comma and colon in lowers.
	escapedLine = `50 27 0:41 / /nonexistent-ocisnap-test/my\040root rw - overlay overlay ` +
		`rw,lowerdir=/nonexistent-ocisnap-test/a\054b:/nonexistent-ocisnap-test/c\134:d:/nonexistent-ocisnap-test/e\072f,` +
		`upperdir=/nonexistent-ocisnap-test/up\040per,workdir=/nonexistent-ocisnap-test/wo\134rk,userxattr`
	// read-only image view, metacopy with data-only layers (composefs style).
	metacopyLine = `51 27 0:42 / /nonexistent-ocisnap-test/view ro,relatime - overlay composefs ` +
		`ro,lowerdir=/nonexistent-ocisnap-test/meta::/nonexistent-ocisnap-test/objects,redirect_dir=on,metacopy=on`
	tmpfsLine = `60 27 0:50 / /nonexistent-ocisnap-test/c1/merged rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k`
	fuseLine  = `61 27 0:51 / /nonexistent-ocisnap-test/fuse/merged rw,nodev,relatime - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0`
)

func TestFindFromReader(t *testing.T) {
	const n = "/nonexistent-ocisnap-test"
	table := strings.Join([]string{
		`22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda1 rw`,
		podmanLine, containerdLine, newAPILine, escapedLine, metacopyLine, fuseLine,
	}, "\n") + "\n"
	tests := []struct {
		name, mountpoint string
		want             Mount
	}{
		{"podman", n + "/storage/overlay/c52d6d965cd1/merged/", Mount{
			Mountpoint: n + "/storage/overlay/c52d6d965cd1/merged",
			Upper:      n + "/storage/overlay/c52d6d965cd1/diff",
			Work:       n + "/storage/overlay/c52d6d965cd1/work",
			Lowers:     []string{n + "/storage/overlay/l/O4UKRPFK62YYQYXPO4MI5EQZX7"},
		}},
		{"containerd", n + "/containerd/k8s.io/8f1e/rootfs", Mount{
			Mountpoint: n + "/containerd/k8s.io/8f1e/rootfs",
			Upper:      n + "/snapshots/13/fs",
			Work:       n + "/snapshots/13/work",
			Lowers:     []string{n + "/snapshots/12/fs", n + "/snapshots/11/fs", n + "/snapshots/3/fs"},
		}},
		{"new mount API", n + "/c1/merged", Mount{
			Mountpoint: n + "/c1/merged",
			Upper:      n + "/c1/diff",
			Work:       n + "/c1/work",
			Lowers:     []string{n + "/l/AAA", n + "/c:1/diff"},
			DataDirs:   []string{n + "/l/BBB"},
		}},
		{"escapes", n + "/my root", Mount{
			Mountpoint: n + "/my root",
			Upper:      n + "/up per",
			Work:       n + `/wo\rk`,
			Lowers:     []string{n + "/a,b", n + "/c:d", n + "/e:f"},
			UserXattr:  true,
		}},
		{"metacopy", n + "/view", Mount{
			Mountpoint:  n + "/view",
			Lowers:      []string{n + "/meta"},
			DataDirs:    []string{n + "/objects"},
			Metacopy:    true,
			RedirectDir: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := FindFromReader(strings.NewReader(table), tt.mountpoint)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Options) == 0 || m.Options[0] != "rw" && m.Options[0] != "ro" {
				t.Errorf("options %q", m.Options)
			}
			m.Options = nil
			if !reflect.DeepEqual(*m, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *m, tt.want)
			}
		})
	}
}

func TestFindFromReaderRawOptions(t *testing.T) {
	m, err := FindFromReader(strings.NewReader(escapedLine+"\n"), "/nonexistent-ocisnap-test/my root")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rw",
		`lowerdir=/nonexistent-ocisnap-test/a\054b:/nonexistent-ocisnap-test/c\134:d:/nonexistent-ocisnap-test/e\072f`,
		`upperdir=/nonexistent-ocisnap-test/up\040per`, `workdir=/nonexistent-ocisnap-test/wo\134rk`, "userxattr"}
	if !reflect.DeepEqual(m.Options, want) {
		t.Errorf("got %q", m.Options)
	}
}

func TestFindFromReaderErrors(t *testing.T) {
	const mp = "/nonexistent-ocisnap-test/c1/merged"
	tests := []struct {
		name, table, mountpoint string
		is                      error
		contains                []string
	}{
		{"nothing mounted", podmanLine, "/nonexistent-ocisnap-test/elsewhere", ErrNotMounted, nil},
		{"parent of a mount", podmanLine, "/nonexistent-ocisnap-test/storage/overlay", ErrNotMounted, nil},
		{"tmpfs", tmpfsLine, mp, ErrNotOverlay, []string{"tmpfs", "overlayfs"}},
		{"fuse-overlayfs", fuseLine, "/nonexistent-ocisnap-test/fuse/merged", ErrNotOverlay, []string{"fuse.fuse-overlayfs", "overlayfs"}},
		{"tmpfs stacked on overlay", newAPILine + "\n" + tmpfsLine, mp, ErrNotOverlay, []string{"tmpfs"}},
		{"no lowerdir", `1 1 0:1 / ` + mp + ` rw - overlay overlay rw,upperdir=/u,workdir=/w`, mp, nil, []string{"no lower layer"}},
		{"empty layer", `1 1 0:1 / ` + mp + ` rw - overlay overlay rw,lowerdir=/a::`, mp, nil, []string{"empty layer"}},
		{"relative, not containers/storage", `1 1 0:1 / /nonexistent-ocisnap-test/rootfs rw - overlay overlay rw,lowerdir=l/A,upperdir=/u,workdir=/w`,
			"/nonexistent-ocisnap-test/rootfs", nil, []string{"lowerdir", `"l/A"`, "relative"}},
		{"relative, missing", `1 1 0:1 / ` + mp + ` rw - overlay overlay rw,lowerdir=l/A,upperdir=c1/diff,workdir=c1/work`,
			mp, os.ErrNotExist, []string{"upperdir", `"c1/diff"`, "/nonexistent-ocisnap-test"}},
		{"malformed table", "garbage line\n", mp, nil, []string{"parsing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := FindFromReader(strings.NewReader(tt.table+"\n"), tt.mountpoint)
			if err == nil {
				t.Fatalf("no error, got %+v", m)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%v: not %v", err, tt.is)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%v: does not mention %q", err, s)
				}
			}
		})
	}
}

func TestFindFromReaderStackedOverlayWins(t *testing.T) {
	other := strings.Replace(newAPILine, "/c1/diff,", "/c2/diff,", 1)
	table := tmpfsLine + "\n" + newAPILine + "\n" + other + "\n"
	m, err := FindFromReader(strings.NewReader(table), "/nonexistent-ocisnap-test/c1/merged")
	if err != nil {
		t.Fatal(err)
	}
	if m.Upper != "/nonexistent-ocisnap-test/c2/diff" {
		t.Errorf("topmost mount not chosen: upper %q", m.Upper)
	}
}

// A containers/storage home laid out on disk, mounted (in the table only)
// with relative paths: they resolve against the home, l/ links to the layers.
func TestFindFromReaderRelative(t *testing.T) {
	home := newStorageHome(t)
	mp := filepath.Join(home, "c1", "merged")
	line := `70 27 0:60 / ` + strings.ReplaceAll(mp, " ", `\040`) + ` rw,nodev,relatime - overlay overlay ` +
		`rw,lowerdir=l/AAA:l/BBB,upperdir=c1/diff,workdir=c1/work,metacopy=on`
	// Through a symlink to the mountpoint, as a bundle's rootfs may be.
	link := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Symlink(mp, link); err != nil {
		t.Fatal(err)
	}
	m, err := FindFromReader(strings.NewReader(line+"\n"), link)
	if err != nil {
		t.Fatal(err)
	}
	checkStorageMount(t, m, home)
	if !m.Metacopy || !m.RedirectDir {
		t.Errorf("metacopy=%v redirect=%v", m.Metacopy, m.RedirectDir)
	}
}

// newStorageHome lays out a containers/storage overlay home: two layers with
// l/ short links, one container. Its path contains a space.
func newStorageHome(t *testing.T) string {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(base, "storage home", "overlay")
	for _, d := range []string{"l", "L1/diff", "L2/diff", "c1/diff", "c1/work", "c1/merged"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../L1/diff", filepath.Join(home, "l", "AAA")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../L2/diff", filepath.Join(home, "l", "BBB")); err != nil {
		t.Fatal(err)
	}
	return home
}

func checkStorageMount(t *testing.T, m *Mount, home string) {
	t.Helper()
	want := Mount{
		Mountpoint: filepath.Join(home, "c1", "merged"),
		Upper:      filepath.Join(home, "c1", "diff"),
		Work:       filepath.Join(home, "c1", "work"),
		Lowers:     []string{filepath.Join(home, "L1", "diff"), filepath.Join(home, "L2", "diff")},
	}
	if m.Mountpoint != want.Mountpoint || m.Upper != want.Upper || m.Work != want.Work || !reflect.DeepEqual(m.Lowers, want.Lowers) {
		t.Errorf("got  %+v\nwant %+v", *m, want)
	}
	for _, d := range append([]string{m.Upper, m.Work}, m.Lowers...) {
		if st, err := os.Lstat(d); err != nil || !st.IsDir() {
			t.Errorf("%q is not an existing directory: %v", d, err)
		}
	}
}
