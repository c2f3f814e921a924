package testutil

import (
	"archive/tar"
	"bytes"
	"io"
	"maps"
	"testing"
	"time"
)

// BuildTime is the modification time Node constructors give an entry. It
// has nanoseconds, which only PAX records carry.
var BuildTime = time.Unix(1700000000, 123456789)

// Node is one path of a directory tree or a tar stream a test builds with
// BuildTree or Tar: a tar header and, for a regular file, its content (the
// header's Size is set from it). Build one with a constructor (Dir, File,
// Symlink, Hardlink, Whiteout, Fifo, Char, Block) and refine it with the
// With methods; Header is open for anything they do not cover (a hostile
// header).
type Node struct {
	Header tar.Header
	Body   string

	// What BuildTree applies beyond the type and mode: the owner and the
	// modification time only when asked for (WithOwner, WithMTime), since
	// a tree's defaults are the test's uid and the time of creation.
	owned, timed bool
}

// Dir is a directory, mode 0755.
func Dir(name string) Node { return node(tar.TypeDir, name, 0o755) }

// File is a regular file with content body, mode 0644.
func File(name, body string) Node {
	n := node(tar.TypeReg, name, 0o644)
	n.Body = body
	return n
}

// Symlink is a symbolic link to target, mode 0777.
func Symlink(name, target string) Node {
	n := node(tar.TypeSymlink, name, 0o777)
	n.Header.Linkname = target
	return n
}

// Hardlink is a hard link to target (a name of the same tree or tar).
func Hardlink(name, target string) Node {
	n := node(tar.TypeLink, name, 0)
	n.Header.Linkname = target
	return n
}

// Whiteout is an overlay-format whiteout, as gVisor writes it and
// overlayfs keeps it in an upper directory: a char 0/0 device, mode 0.
func Whiteout(name string) Node { return node(tar.TypeChar, name, 0) }

// Fifo is a named pipe, mode 0640.
func Fifo(name string) Node { return node(tar.TypeFifo, name, 0o640) }

// Char is a character device major:minor, mode 0644.
func Char(name string, major, minor int64) Node {
	n := node(tar.TypeChar, name, 0o644)
	n.Header.Devmajor, n.Header.Devminor = major, minor
	return n
}

// Block is a block device major:minor, mode 0644.
func Block(name string, major, minor int64) Node {
	n := Char(name, major, minor)
	n.Header.Typeflag = tar.TypeBlock
	return n
}

func node(typ byte, name string, mode int64) Node {
	return Node{Header: tar.Header{Typeflag: typ, Name: name, Mode: mode, ModTime: BuildTime}}
}

// WithMode returns n with mode bits m (permissions, setuid, setgid, sticky).
func (n Node) WithMode(m int64) Node { n.Header.Mode = m; return n }

// WithOwner returns n owned by uid:gid.
func (n Node) WithOwner(uid, gid int) Node {
	n.Header.Uid, n.Header.Gid, n.owned = uid, gid, true
	return n
}

// WithMTime returns n with modification time mt.
func (n Node) WithMTime(mt time.Time) Node { n.Header.ModTime, n.timed = mt, true; return n }

// WithXattr returns n with the extended attribute name=value (a
// SCHILY.xattr. PAX record in a tar).
func (n Node) WithXattr(name, value string) Node { return n.WithPAX("SCHILY.xattr."+name, value) }

// WithOpaque returns the directory n marked opaque as overlayfs marks it
// (trusted.overlay.opaque=y).
func (n Node) WithOpaque() Node { return n.WithXattr("trusted.overlay.opaque", "y") }

// WithPAX returns n with the PAX records k1, v1, k2, v2, ... added.
func (n Node) WithPAX(kv ...string) Node {
	n.Header.PAXRecords = maps.Clone(n.Header.PAXRecords)
	if n.Header.PAXRecords == nil {
		n.Header.PAXRecords = make(map[string]string)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Header.PAXRecords[kv[i]] = kv[i+1]
	}
	return n
}

// Tar writes nodes as a PAX archive, in the order given, with its
// end-of-archive blocks. It fails t on any error.
func Tar(t testing.TB, nodes ...Node) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := writeTar(t, &buf, nodes)
	if err := tw.Close(); err != nil {
		t.Fatalf("build tar: %v", err)
	}
	return buf.Bytes()
}

// TarUnterminated is Tar without the end-of-archive blocks: a truncated
// stream.
func TarUnterminated(t testing.TB, nodes ...Node) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := writeTar(t, &buf, nodes)
	if err := tw.Flush(); err != nil {
		t.Fatalf("build tar: %v", err)
	}
	return buf.Bytes()
}

func writeTar(t testing.TB, w io.Writer, nodes []Node) *tar.Writer {
	t.Helper()
	tw := tar.NewWriter(w)
	for _, n := range nodes {
		h := n.Header
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(n.Body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("build tar: header %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, n.Body); err != nil {
			t.Fatalf("build tar: %q: %v", h.Name, err)
		}
	}
	return tw
}
