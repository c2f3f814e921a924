package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// rootlessUser is a user created for the test, with subordinate ids, a
// runtime directory and podman configured for rootless native overlay.
type rootlessUser struct {
	t                      testing.TB
	name, home, runtimeDir string
	uid, gid               int
}

// newRootlessUser creates the user (useradd -m), gives it subordinate id
// ranges if useradd did not, makes /run/user/<uid> (0700, owned by the
// user: there is no logind session to do it) and writes its storage.conf
// (driver overlay: native rootless overlay, userxattr) and containers.conf.
// Everything is removed at cleanup, the user's podman pause process
// included.
func newRootlessUser(t testing.TB) *rootlessUser {
	t.Helper()
	testutil.RequireTools(t, "podman", "runc", "busybox", "useradd", "userdel", "runuser", "newuidmap", "newgidmap")
	name := fmt.Sprintf("ocisnaprl%d", os.Getpid()%100000)
	exec.Command("userdel", "-r", name).Run() // a leftover of a killed run
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		testutil.SkipOrFail(t, "useradd: %v\n%s", err, out)
	}
	u := &rootlessUser{t: t, name: name}
	t.Cleanup(u.remove)
	pw, err := user.Lookup(name)
	must(t, err)
	u.home = pw.HomeDir
	u.uid, _ = strconv.Atoi(pw.Uid)
	u.gid, _ = strconv.Atoi(pw.Gid)
	u.runtimeDir = fmt.Sprintf("/run/user/%d", u.uid)
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, _ := os.ReadFile(f)
		if !bytes.Contains(data, []byte("\n"+name+":")) && !bytes.HasPrefix(data, []byte(name+":")) {
			// Debian's useradd allocates ranges itself; others may not.
			fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			must(t, err)
			fmt.Fprintf(fh, "%s:%d:65536\n", name, 400000+65536*(os.Getpid()%64))
			fh.Close()
		}
	}
	must(t, os.MkdirAll("/run/user", 0o755))
	must(t, os.Mkdir(u.runtimeDir, 0o700))
	must(t, os.Chown(u.runtimeDir, u.uid, u.gid))
	u.write(".config/containers/storage.conf", "[storage]\ndriver = \"overlay\"\n")
	u.write(".config/containers/containers.conf", `[containers]
default_ulimits = ["nofile=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
`)
	return u
}

// write writes a file under the user's home, owned by the user, making the
// missing directories (0700, the user's).
func (u *rootlessUser) write(rel, content string) {
	u.t.Helper()
	u.mkdir(filepath.Dir(rel))
	p := filepath.Join(u.home, rel)
	must(u.t, os.WriteFile(p, []byte(content), 0o600))
	must(u.t, os.Chown(p, u.uid, u.gid))
}

func (u *rootlessUser) mkdir(rel string) string {
	u.t.Helper()
	p := u.home
	for _, elem := range strings.Split(rel, "/") {
		p = filepath.Join(p, elem)
		if err := os.Mkdir(p, 0o700); err == nil {
			must(u.t, os.Chown(p, u.uid, u.gid))
		} else if !errors.Is(err, os.ErrExist) {
			u.t.Fatal(err)
		}
	}
	return p
}

// run runs a command as the user, in a clean environment like a login's,
// in the user's home; it returns stdout (and stderr on failure).
func (u *rootlessUser) run(args ...string) (string, error) {
	env := []string{"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name, "XDG_RUNTIME_DIR=" + u.runtimeDir}
	cmd := exec.Command("runuser", append(append([]string{"-u", u.name, "--"}, env...), args...)...)
	cmd.Dir = u.home
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String() + "\n" + stderr.String()), err
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (u *rootlessUser) podman(hooksDir string, args ...string) string {
	u.t.Helper()
	out, err := u.run(append([]string{"podman", "--hooks-dir", hooksDir}, args...)...)
	if err != nil {
		u.t.Fatalf("rootless podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// remove deletes the user's containers and storage, stops its podman pause
// process (by the pid podman recorded), and deletes the user, its home,
// subordinate ids and runtime directory.
func (u *rootlessUser) remove() {
	if u.home != "" {
		u.run("podman", "rm", "-af", "-t", "0")
		u.run("podman", "system", "reset", "-f")
		for _, f := range []string{"libpod/tmp/pause.pid", "libpod/pause.pid"} {
			if data, err := os.ReadFile(filepath.Join(u.runtimeDir, f)); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	exec.Command("userdel", "-r", "-f", u.name).Run()
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		if data, err := os.ReadFile(f); err == nil {
			var keep []string
			for _, l := range strings.SplitAfter(string(data), "\n") {
				if !strings.HasPrefix(l, u.name+":") {
					keep = append(keep, l)
				}
			}
			os.WriteFile(f, []byte(strings.Join(keep, "")), 0o644)
		}
	}
	if u.runtimeDir != "" {
		os.RemoveAll(u.runtimeDir)
	}
	if u.home != "" {
		os.RemoveAll(u.home)
	}
}

// containerManifest is a manifest computed inside a container with
// busybox: type, mode, owner, and for non-directories size, link count,
// mtime (nanoseconds), content hash and link target. Runtime mounts and
// the stubs the engine makes in every container (/etc/mtab) are left out.
const containerManifest = `find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
 -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf -o -path /etc/mtab \) -prune -o -print | sort | while read -r p; do
 if [ -d "$p" ] && [ ! -L "$p" ]; then stat -c '%n %a %u:%g %F' "$p"; continue; fi
 stat -c '%n %a %u:%g %F %s %h %y' "$p"
 if [ -L "$p" ]; then readlink "$p"; elif [ -f "$p" ]; then md5sum "$p"; fi
done`

// TestRootlessPodman: podman run by an unprivileged user (rootless, native
// overlay with userxattr) runs the hooks as that user inside its user
// namespace. The per-user defaults apply with no flag: state in
// $XDG_RUNTIME_DIR/ocisnap (here /run/user/<uid>/ocisnap), snapshots
// allowed in ~/.local/share/ocisnap. The export holds the contract's
// format although the upper holds user.overlay.* xattrs, and the export →
// restore round trip gives the same tree.
func TestRootlessPodman(t *testing.T) {
	testutil.RequireRoot(t)
	u := newRootlessUser(t)

	// The product, readable and executable by the user: a copy of the
	// installed hook (gate and engine) in a world-readable directory, and a hooks.d file
	// pointing at it (with no policy flag: the per-user defaults).
	pub, err := os.MkdirTemp("", "ocisnap-rootless-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(pub) })
	must(t, os.Chmod(pub, 0o755))
	bin := filepath.Join(pub, "ocisnap-hook")
	copyFile(t, hookBin, bin, 0o755)
	// The gate execs the engine beside it.
	copyFile(t, filepath.Join(filepath.Dir(hookBin), "ocisnap-hook-engine"), filepath.Join(pub, "ocisnap-hook-engine"), 0o755)
	logFile := filepath.Join(u.home, "hook.log")
	hd := writeHooksDir(t, filepath.Join(pub, "hooks.d"), bin, 0, "--log-file", logFile, "--log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(logFile)
			t.Logf("hook log:\n%s", log)
		}
	})

	root := filepath.Join(pub, "imgroot")
	buildImageRoot(t, root)
	imgTar := filepath.Join(pub, "img.tar")
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", imgTar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	must(t, os.Chmod(imgTar, 0o644))
	u.podman(hd, "import", "-q", imgTar, "localhost/ocisnap-rootless:latest")
	img := "localhost/ocisnap-rootless:latest"
	if drv := u.podman(hd, "info", "--format", "{{.Store.GraphDriverName}}"); drv != "overlay" {
		t.Fatalf("rootless podman uses the %q storage driver, want overlay", drv)
	}

	// The allowed directory must exist: the hook does not create it.
	snapDir := u.mkdir(".local/share/ocisnap")
	snap := filepath.Join(snapDir, "rootless.tar")
	id := u.podman(hd, "run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+snap, img, "sleep", "1000")
	if _, err := os.Stat(filepath.Join(u.runtimeDir, "ocisnap", id+".json")); err != nil {
		t.Fatalf("no state in the user's runtime directory: %v", err)
	}
	u.podman(hd, "exec", id, "sh", "-c", changes)
	upper := u.podman(hd, "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", id)
	checkRootlessUpper(t, upper)
	want := u.podman(hd, "exec", id, "sh", "-c", containerManifest)
	u.podman(hd, "stop", "-t", "0", id)
	u.podman(hd, "rm", id)

	fi, err := os.Stat(snap)
	if err != nil {
		t.Fatalf("no snapshot in ~/.local/share/ocisnap: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.uid {
		t.Errorf("snapshot owned by uid %d, want the user's %d", st.Uid, u.uid)
	}
	checkSnapshotFormat(t, snap, "overlay")
	for n, h := range readTarHeaders(t, snap) {
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.user.overlay.") {
				t.Errorf("%s: rootless overlay bookkeeping exported: %s", n, k)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(u.runtimeDir, "ocisnap", id+".json")); err == nil {
		t.Errorf("state of %s left after poststop", id)
	}
	if tmps := tempsIn(t, snapDir); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}

	id2 := u.podman(hd, "run", "-d", "--network=none", "--annotation", "io.ocisnap.restore="+snap, img, "sleep", "1000")
	got := u.podman(hd, "exec", id2, "sh", "-c", containerManifest)
	upper2 := u.podman(hd, "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", id2)
	if got != want {
		t.Fatalf("rootless restore differs from the exported container:\n%s", testutil.TreeDiff(want, got))
	}
	// The restore went through the rootless overlay: the replaced
	// directory is opaque in the new upper the user.overlay way.
	if v := getXattr(filepath.Join(upper2, "etc/app"), "user.overlay.opaque"); v != "y" {
		t.Errorf("restored upper etc/app: user.overlay.opaque=%q, want y", v)
	}
	u.podman(hd, "rm", "-f", "-t", "0", id2)
}

// checkRootlessUpper checks that the upper uses rootless overlay's forms:
// user.overlay.opaque on a replaced directory and a whiteout for a deleted
// image file (a char 0/0 device, or an empty file with
// user.overlay.whiteout).
func checkRootlessUpper(t testing.TB, upper string) {
	t.Helper()
	if v := getXattr(filepath.Join(upper, "etc/app"), "user.overlay.opaque"); v != "y" {
		t.Fatalf("upper etc/app: user.overlay.opaque=%q, want y (not a userxattr overlay?)", v)
	}
	if v := getXattr(filepath.Join(upper, "etc/app"), "trusted.overlay.opaque"); v != "" {
		t.Fatalf("upper etc/app has trusted.overlay.opaque: not a rootless overlay")
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(upper, "README"), &st))
	isChar := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
	isXattr := st.Mode&unix.S_IFMT == unix.S_IFREG && getXattr(filepath.Join(upper, "README"), "user.overlay.whiteout") != ""
	if !isChar && !isXattr {
		t.Fatalf("upper README is not a whiteout: mode %o rdev %d", st.Mode, st.Rdev)
	}
}

func getXattr(p, name string) string {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
	must(t, os.Chmod(dst, mode))
}
