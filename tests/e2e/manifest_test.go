package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// manifestSkip are runtime-made paths that differ between any two
// containers (mountpoints and their stubs).
var manifestSkip = map[string]bool{
	"proc": true, "sys": true, "dev": true, "run": true, "tmp": true,
	"etc/hosts": true, "etc/hostname": true, "etc/resolv.conf": true,
}

// manifest describes a rootfs tree: one line per path with type, mode,
// owner, size, content hash, mtime (files and fifos), link target and user
// xattrs, then one line per hard-link group.
func manifest(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	links := map[[2]uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if manifestSkip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %04o %d:%d", rel, st.Mode&07777, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			line += fmt.Sprintf(" reg %d %s %d", st.Size, hashFile(t, p), st.Mtim.Nano())
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				links[k] = append(links[k], rel)
			}
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " lnk " + target
		case syscall.S_IFDIR:
			line += " dir"
		case syscall.S_IFIFO:
			line += fmt.Sprintf(" fifo %d", st.Mtim.Nano())
		default:
			line += fmt.Sprintf(" other %x", st.Rdev)
		}
		line += userXattrs(p)
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("manifest %s: %v", root, err)
	}
	var groups []string
	for _, g := range links {
		sort.Strings(g)
		groups = append(groups, "hardlinks "+strings.Join(g, " "))
	}
	sort.Strings(groups)
	return strings.Join(append(lines, groups...), "\n") + "\n"
}

func hashFile(t testing.TB, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func userXattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(name, "user.") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out string
	for _, name := range names {
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		if err == nil {
			out += fmt.Sprintf(" %s=%q", name, v[:m])
		}
	}
	return out
}

// diffLines returns a short human diff of two manifests, or "".
func diffLines(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	inB := map[string]bool{}
	for _, l := range bs {
		inB[l] = true
	}
	inA := map[string]bool{}
	for _, l := range as {
		inA[l] = true
	}
	var out []string
	for _, l := range as {
		if !inB[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !inA[l] {
			out = append(out, "+ "+l)
		}
	}
	if len(out) > 40 {
		out = append(out[:40], "...")
	}
	return strings.Join(out, "\n")
}
