//go:build linux

package testutil

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TreeOpt tunes DescribeTree.
type TreeOpt func(*treeConfig)

type treeConfig struct {
	skip               map[string]bool
	noCtime, noTimes   bool
	noDirTimes, noSize bool
	noLinkTimes        bool
	noNlink            bool
	noTimesOf          map[string]bool
	xattrPrefixes      []string
}

// SkipPath leaves out rel (relative to the described directory, slash
// separated) and everything beneath it: the root a test lets code write
// to, when the description is of everything outside it.
func SkipPath(rel string) TreeOpt {
	return func(c *treeConfig) { c.skip[filepath.Clean(rel)] = true }
}

// WithoutCtime leaves out change times: for a tree rewritten with the same
// content and metadata (every rewrite changes them).
func WithoutCtime() TreeOpt { return func(c *treeConfig) { c.noCtime = true } }

// WithoutTimes leaves out modification and change times: for two trees
// written at different moments or by different tools.
func WithoutTimes() TreeOpt { return func(c *treeConfig) { c.noTimes = true } }

// WithoutDirTimes leaves out the modification and change times of
// directories only (they depend on the order their children were made in).
func WithoutDirTimes() TreeOpt { return func(c *treeConfig) { c.noDirTimes = true } }

// WithoutDirSizes leaves out the sizes of directories, which depend on the
// filesystem and on the history of its entries (ext4 never shrinks one).
func WithoutDirSizes() TreeOpt { return func(c *treeConfig) { c.noSize = true } }

// WithoutTimesOf leaves out the modification and change times of the
// paths rel (relative, slash separated; "." is the described directory):
// a root whose times the code under test sets on purpose.
func WithoutTimesOf(rel ...string) TreeOpt {
	return func(c *treeConfig) {
		for _, r := range rel {
			c.noTimesOf[filepath.Clean(r)] = true
		}
	}
}

// WithoutSymlinkTimes leaves out the modification and change times of
// symlinks, which some copies (an overlay's copy-up) do not keep.
func WithoutSymlinkTimes() TreeOpt { return func(c *treeConfig) { c.noLinkTimes = true } }

// WithoutNlink leaves out link counts (hard-link groups are still listed):
// overlayfs reports its own counts for merged directories.
func WithoutNlink() TreeOpt { return func(c *treeConfig) { c.noNlink = true } }

// OnlyXattrs keeps only the extended attributes whose names start with one
// of prefixes ("user."): for trees whose other attributes (security
// labels, overlay bookkeeping) are not the code's to keep.
func OnlyXattrs(prefixes ...string) TreeOpt {
	return func(c *treeConfig) { c.xattrPrefixes = append(c.xattrPrefixes, prefixes...) }
}

// DescribeTree describes everything under dir (dir itself as "."), one line
// per path in lexical order, without following symlinks: type and mode
// bits, owner (uid:gid), size, link count, modification and change times
// with nanoseconds, every extended attribute (any namespace, ACLs
// included) with its value, and for a regular file its content's SHA-256,
// for a symlink its target, for a device its major:minor. Files sharing an
// inode are listed again as a hard-link group at the end.
//
// Two descriptions of the same tree are equal exactly when nothing listed
// changed: compare the descriptions of what lies outside a root before and
// after a run to show that the run chowned, chmodded, retargeted, wrote,
// linked, touched or set an xattr on nothing there (the change time moves
// even for a chown or chmod to the same value). Mountpoints beneath dir
// are descended into like directories. It fails t on any error.
func DescribeTree(t testing.TB, dir string, opts ...TreeOpt) string {
	t.Helper()
	c := &treeConfig{skip: map[string]bool{}, noTimesOf: map[string]bool{}}
	for _, o := range opts {
		o(c)
	}
	var sb strings.Builder
	groups := map[[2]uint64][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if c.skip[rel] {
			if rel == "." {
				return filepath.SkipAll
			}
			if !d.IsDir() {
				return nil // SkipDir would skip the file's siblings
			}
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
		fmt.Fprintf(&sb, "%s mode=%o ids=%d:%d", strconv.Quote(rel), st.Mode, st.Uid, st.Gid)
		if !c.noNlink {
			fmt.Fprintf(&sb, " nlink=%d", st.Nlink)
		}
		if !isDir || !c.noSize {
			fmt.Fprintf(&sb, " size=%d", st.Size)
		}
		if !c.noTimes && !(isDir && c.noDirTimes) && !(isLink && c.noLinkTimes) && !c.noTimesOf[rel] {
			fmt.Fprintf(&sb, " mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
			if !c.noCtime {
				fmt.Fprintf(&sb, " ctime=%d.%09d", st.Ctim.Sec, st.Ctim.Nsec)
			}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			// O_NOFOLLOW|O_NONBLOCK: never block on what replaced it.
			f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = f.WriteTo(h)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			fmt.Fprintf(&sb, " sha256=%x", h.Sum(nil))
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				groups[k] = append(groups[k], rel)
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&sb, " -> %s", strconv.Quote(target))
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&sb, " rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		xattrs, err := listXattrs(p)
		if err != nil {
			return err
		}
		for _, x := range xattrs {
			if c.keepXattr(x) {
				sb.WriteString(" " + x)
			}
		}
		sb.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatalf("describe tree %s: %v", dir, err)
	}
	var links []string
	for _, g := range groups {
		sort.Strings(g)
		links = append(links, fmt.Sprintf("hard links %q\n", g))
	}
	sort.Strings(links)
	for _, l := range links {
		sb.WriteString(l)
	}
	return sb.String()
}

// keepXattr reports whether the listed attribute x ("xattr:name=...") is
// described.
func (c *treeConfig) keepXattr(x string) bool {
	if len(c.xattrPrefixes) == 0 {
		return true
	}
	name := strings.TrimPrefix(x, "xattr:")
	for _, p := range c.xattrPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// listXattrs returns name=value for each extended attribute of p (not
// followed), sorted by name; a value longer than 64 bytes as its SHA-256.
func listXattrs(p string) ([]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if err == unix.EOPNOTSUPP {
			return nil, nil
		}
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		val := make([]byte, vsize)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		val = val[:m]
		if len(val) > 64 {
			out = append(out, fmt.Sprintf("xattr:%s=sha256:%x", name, sha256.Sum256(val)))
		} else {
			out = append(out, fmt.Sprintf("xattr:%s=%q", name, val))
		}
	}
	sort.Strings(out)
	return out, nil
}

// TreeDiff shows the lines of two DescribeTree results that differ: "-"
// for a line only in before, "+" for one only in after.
func TreeDiff(before, after string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			if l != "" {
				m[l] = true
			}
		}
		return m
	}
	b, a := in(before), in(after)
	var out []string
	for l := range b {
		if !a[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range a {
		if !b[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] || (out[i][2:] == out[j][2:] && out[i] < out[j]) })
	return strings.Join(out, "\n")
}
