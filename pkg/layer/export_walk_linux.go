//go:build linux

package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Overlay xattr names without their prefix (trusted.overlay. or, under
// userxattr, user.overlay.).
const (
	ovlOpaque   = "opaque"
	ovlRedirect = "redirect"
	ovlMetacopy = "metacopy"
	ovlWhiteout = "whiteout"
)

// walker walks an overlay upper directory and, for metacopy files and
// redirected directories, its lower directories, the way overlayfs looks
// them up (fs/overlayfs/namei.c ovl_lookup), feeding a Writer.
type walker struct {
	ctx  context.Context
	w    *Writer
	o    *writeOptions
	prog progress

	// Layers: 0 is the upper, 1.. the lowers, top first. roots are open
	// directory fds; rootPaths their paths, for errors and for the xattr
	// fallback on kernels without getxattrat.
	roots     []int
	rootPaths []string

	// noLowers says why the lowers given could not be used, nil if they
	// can or none were given.
	noLowers error

	ovl   string            // overlay xattr prefix in use
	links map[devIno]string // first path written of each multiply linked file
	pipe  *exportPipe       // nil: put writes the entry itself
	// The upper directory walkUpper is reading, and its descriptor shared
	// with the pipe's reader stage (made when first needed).
	dirFd  int
	dirRef *dirRef

	direntBuf []byte
	nameBuf   []byte // xattr name lists
	valBuf    []byte // xattr values
	noXattrAt bool   // the kernel lacks listxattrat/getxattrat (before 6.13)

	// pending are the unchanged directories (WithDelta) on the path to
	// the entry being walked that are not written yet: written, in order,
	// before anything below them is.
	pending []pendingDir
}

type pendingDir struct {
	rel string
	e   *Entry
}

type devIno struct{ dev, ino uint64 }

// layerPath is a directory in one layer, relative to the layer's root.
type layerPath struct {
	layer int
	path  string
}

// found is a file a lookup found in one layer.
type found struct {
	layer int
	path  string
	st    unix.Stat_t
}

// lookupResult is what overlayfs would make of a name in a merged
// directory: the top file (nil: absent or whited out), for a regular file
// the file holding its data (below the top if the top is a metacopy file),
// for a directory the layers it merges.
type lookupResult struct {
	top, data *found
	stack     []layerPath
}

// dirNode is a directory being exported. Its layer stack is resolved only
// when needed (for a metacopy file or a redirected directory inside it).
type dirNode struct {
	parent   *dirNode
	name     string // in the parent
	rel      string // path in the layer, "" for the root
	stack    []layerPath
	resolved bool
}

// object is one file in one layer: name is relative to dirfd, full is the
// same file's absolute path.
type object struct {
	dirfd int
	name  string
	full  string
	st    unix.Stat_t
	// change is what the delta (WithDelta) says of the entry.
	change Change
}

func fileID(st *unix.Stat_t) FileID { return StatFileID(st) }

// StatFileID is the FileID of the entry st is the lstat of. A whiteout
// (char 0/0) is identified by its type alone: overlayfs makes every
// whiteout of an upper a hard link to one shared inode, so each new
// whiteout changes the ctime of all the others (and their link count),
// while what a whiteout says never changes.
func StatFileID(st *unix.Stat_t) FileID {
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
		return FileID{Mode: st.Mode}
	}
	return FileID{Ino: st.Ino, CtimeNs: st.Ctim.Nano(), Size: st.Size, Mode: st.Mode}
}

// deltaEntry asks the delta about rel and writes the whiteouts of what is
// gone before it.
func (wk *walker) deltaEntry(rel string, st *unix.Stat_t) (Change, error) {
	if wk.o.delta == nil {
		return New, nil
	}
	c, gone, err := wk.o.delta.Entry(rel, fileID(st))
	if err != nil {
		return New, exportError(rel, err)
	}
	return c, wk.gone(gone)
}

// gone writes a whiteout for each path, but none under an excluded path.
func (wk *walker) gone(paths []string) error {
	for _, p := range paths {
		if p == "" || wk.o.excludedPath(p) {
			continue
		}
		if err := wk.put(p, &Entry{Path: p, Whiteout: true}, nil); err != nil {
			return err
		}
	}
	return nil
}

func writeUpper(ctx context.Context, tw *Writer, upper string, o *writeOptions) error {
	wk := &walker{
		ctx:   ctx,
		w:     tw,
		o:     o,
		prog:  progress{fn: o.progress},
		ovl:   overlayXattrPrefix,
		links: make(map[devIno]string),
	}
	if o.userXattr {
		wk.ovl = overlayUserXattrPfx
	}
	defer func() {
		for _, fd := range wk.roots {
			unix.Close(fd)
		}
	}()
	wk.pipe = newExportPipe()
	for i, dir := range append([]string{upper}, o.lowers...) {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil && i > 0 {
			// The lowers are needed only for metacopy files and
			// redirected directories. A lower can be gone although the
			// overlay is fine: containers/storage mounts the lowers of a
			// container with a user namespace through idmapped mounts
			// it detaches right after mounting the overlay. Go on
			// without lowers; an upper that needs them fails then.
			for _, fd := range wk.roots[1:] {
				unix.Close(fd)
			}
			wk.roots, wk.rootPaths = wk.roots[:1], wk.rootPaths[:1]
			wk.noLowers = fmt.Errorf("open lower directory %q: %w", dir, err)
			break
		}
		if err != nil {
			return fmt.Errorf("export: open upper directory %q: %w", dir, err)
		}
		wk.roots = append(wk.roots, fd)
		wk.rootPaths = append(wk.rootPaths, strings.TrimSuffix(dir, "/"))
	}
	if wk.pipe == nil {
		return wk.root()
	}
	go wk.pipe.walk(wk.root)
	go wk.pipe.read()
	return wk.pipe.write(func(it *exportItem) error {
		return wk.write(it.rel, it.e, it.content())
	})
}

func (wk *walker) noLowersReason() string {
	if wk.noLowers == nil {
		return ""
	}
	return ": " + wk.noLowers.Error()
}

func (wk *walker) root() error {
	ob := object{dirfd: wk.roots[0], full: wk.rootPaths[0]}
	if err := unix.Fstat(wk.roots[0], &ob.st); err != nil {
		return exportError("", err)
	}
	meta, plain, err := wk.xattrs(wk.roots[0], &ob)
	if err != nil {
		return exportError("", err)
	}
	hdr, err := wk.header("", &ob.st, plain)
	if err != nil {
		return err
	}
	if err := wk.put("", &Entry{Header: hdr, Opaque: meta[ovlOpaque] == "y"}, nil); err != nil {
		return err
	}
	if err := wk.walkUpper(wk.roots[0], &dirNode{}); err != nil {
		return err
	}
	if wk.o.delta == nil {
		return nil
	}
	gone, err := wk.o.delta.Finish()
	if err != nil {
		return exportError("", err)
	}
	return wk.gone(gone)
}

// walkUpper exports the upper directory open at fd: its own entries only,
// the changes to the layers below.
func (wk *walker) walkUpper(fd int, node *dirNode) error {
	savedFd, savedRef := wk.dirFd, wk.dirRef
	wk.dirFd, wk.dirRef = fd, nil
	defer func() {
		if wk.dirRef != nil {
			wk.dirRef.release()
		}
		wk.dirFd, wk.dirRef = savedFd, savedRef
	}()
	names, err := wk.readDirNames(fd)
	if err != nil {
		return exportError(node.rel, fmt.Errorf("read directory: %w", err))
	}
	sort.Strings(names)
	for _, name := range names {
		if err := wk.ctx.Err(); err != nil {
			return err
		}
		rel := joinRel(node.rel, name)
		if wk.o.exclude[rel] {
			continue
		}
		ob := object{dirfd: fd, name: name}
		if err := unix.Fstatat(fd, name, &ob.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return exportError(rel, err)
		}
		if ob.change, err = wk.deltaEntry(rel, &ob.st); err != nil {
			return err
		}
		if ob.change == Unchanged && ob.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Left out: one stat and the compare with the record, nothing
			// more (tests/bench/notes.md, "Persist").
			continue
		}
		ob.full = wk.rootPaths[0] + "/" + rel
		if err := wk.entry(rel, &ob, node, nil); err != nil {
			return err
		}
	}
	return nil
}

// walkMerged exports the merged content of a directory inside a redirected
// directory: every name any of its layers holds, as overlayfs resolves it.
func (wk *walker) walkMerged(node *dirNode) error {
	seen := make(map[string]bool)
	var names []string
	for _, lp := range node.stack {
		p := lp.path
		if p == "" {
			p = "."
		}
		fd, err := unix.Openat(wk.roots[lp.layer], p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return exportError(node.rel, fmt.Errorf("open %q: %w", wk.rootPaths[lp.layer]+"/"+lp.path, err))
		}
		ns, err := wk.readDirNames(fd)
		unix.Close(fd)
		if err != nil {
			return exportError(node.rel, fmt.Errorf("read directory %q: %w", wk.rootPaths[lp.layer]+"/"+lp.path, err))
		}
		for _, n := range ns {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := wk.ctx.Err(); err != nil {
			return err
		}
		rel := joinRel(node.rel, name)
		if wk.o.exclude[rel] {
			continue
		}
		res, err := wk.lookup(node.stack, name)
		if err != nil {
			return exportError(rel, err)
		}
		if res.top == nil {
			continue
		}
		ob := object{dirfd: wk.roots[res.top.layer], name: res.top.path,
			full: wk.rootPaths[res.top.layer] + "/" + res.top.path, st: res.top.st}
		// Inside a redirected directory everything is written; the delta
		// is still told, to keep its record in step.
		if _, err := wk.deltaEntry(rel, &ob.st); err != nil {
			return err
		}
		if err := wk.entry(rel, &ob, node, &res); err != nil {
			return err
		}
	}
	return nil
}

// entry exports one file found in parent; res is its lookup inside a
// redirected directory, nil in the upper.
func (wk *walker) entry(rel string, ob *object, parent *dirNode, res *lookupResult) error {
	switch ob.st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return nil
	case unix.S_IFCHR:
		// Checked before hard links: overlayfs links every whiteout to one
		// shared inode.
		if ob.st.Rdev == 0 {
			return wk.put(rel, &Entry{Path: rel, Whiteout: true}, nil)
		}
	case unix.S_IFDIR:
		return wk.dir(rel, ob, parent, res)
	case unix.S_IFREG:
		return wk.regular(rel, ob, parent, res)
	}
	_, plain, err := wk.xattrs(-1, ob)
	if err != nil {
		return exportError(rel, err)
	}
	hdr, err := wk.header(rel, &ob.st, plain)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeSymlink {
		if hdr.Linkname, err = readlinkat(ob.dirfd, ob.name); err != nil {
			return exportError(rel, err)
		}
	}
	return wk.put(rel, &Entry{Path: rel, Header: hdr}, nil)
}

func (wk *walker) dir(rel string, ob *object, parent *dirNode, res *lookupResult) error {
	fd, err := unix.Openat(ob.dirfd, ob.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return exportError(rel, err)
	}
	defer unix.Close(fd)
	meta, plain, err := wk.xattrs(fd, ob)
	if err != nil {
		return exportError(rel, err)
	}
	hdr, err := wk.header(rel, &ob.st, plain)
	if err != nil {
		return err
	}
	node := &dirNode{parent: parent, name: baseRel(rel), rel: rel}
	if res != nil {
		// Inside a redirected directory: all of it is exported.
		node.stack, node.resolved = res.stack, true
		if err := wk.put(rel, &Entry{Path: rel, Header: hdr}, nil); err != nil {
			return err
		}
		return wk.walkMerged(node)
	}
	if redirect, ok := meta[ovlRedirect]; ok {
		// A renamed lower directory: its content lives at the origin in
		// the lowers, which the image at rel does not have. Export it
		// whole, opaque so nothing the image has at rel shows through, as
		// overlayfs shows nothing of the lowers at rel either.
		if len(wk.roots) == 1 {
			return exportError(rel, fmt.Errorf("redirected directory (%s%s=%q) needs the lower directories%s", wk.ovl, ovlRedirect, redirect, wk.noLowersReason()))
		}
		stack, err := wk.stackOf(node)
		if err != nil {
			return exportError(rel, err)
		}
		if len(stack) < 2 {
			return exportError(rel, fmt.Errorf("origin of redirected directory (%s%s=%q) not found in the lower directories", wk.ovl, ovlRedirect, redirect))
		}
		if err := wk.put(rel, &Entry{Path: rel, Header: hdr, Opaque: true}, nil); err != nil {
			return err
		}
		return wk.walkMerged(node)
	}
	opaque := meta[ovlOpaque] == "y" && ob.change == New
	if ob.change == Unchanged {
		// As recorded: written only if something below it is, and not
		// opaque (see Delta).
		wk.pending = append(wk.pending, pendingDir{rel: rel, e: &Entry{Path: rel, Header: hdr}})
		err := wk.walkUpper(fd, node)
		if n := len(wk.pending); n > 0 && wk.pending[n-1].rel == rel {
			wk.pending = wk.pending[:n-1]
		}
		return err
	}
	if err := wk.put(rel, &Entry{Path: rel, Header: hdr, Opaque: opaque}, nil); err != nil {
		return err
	}
	return wk.walkUpper(fd, node)
}

func (wk *walker) regular(rel string, ob *object, parent *dirNode, res *lookupResult) error {
	st := &ob.st
	if res == nil && st.Size == 0 {
		// A whiteout made by a kernel or filesystem without char 0/0
		// devices (lookups in redirected directories have skipped them).
		_, wo, err := wk.getXattr(-1, ob, wk.ovl+ovlWhiteout)
		if err != nil {
			return exportError(rel, err)
		}
		if wo {
			return wk.put(rel, &Entry{Path: rel, Whiteout: true}, nil)
		}
	}
	if st.Nlink > 1 {
		key := devIno{uint64(st.Dev), uint64(st.Ino)}
		if first, ok := wk.links[key]; ok {
			hdr, err := wk.header(rel, st, nil)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Size, hdr.Linkname = tar.TypeLink, 0, first
			return wk.put(rel, &Entry{Path: rel, Header: hdr}, nil)
		}
		wk.links[key] = rel
	}
	if wk.pipe != nil && res == nil && ob.dirfd == wk.dirFd && st.Size > 0 && st.Size <= exportSmallFile {
		// The reader stage opens and reads it; its metadata is read by
		// name. A metacopy file is read here, below.
		meta, plain, err := wk.xattrs(-1, ob)
		if err != nil {
			return exportError(rel, err)
		}
		if _, ok := meta[ovlMetacopy]; !ok {
			hdr, err := wk.header(rel, st, plain)
			if err != nil {
				return err
			}
			if wk.dirRef == nil {
				d, err := newDirRef(wk.dirFd)
				if err != nil {
					return exportError(rel, err)
				}
				wk.dirRef = d
			}
			if err := wk.flushPending(); err != nil {
				return err
			}
			return wk.pipe.queueRead(rel, &Entry{Path: rel, Header: hdr}, wk.dirRef, ob.name)
		}
	}
	fd, err := unix.Openat(ob.dirfd, ob.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return exportError(rel, err)
	}
	defer unix.Close(fd)
	meta, plain, err := wk.xattrs(fd, ob)
	if err != nil {
		return exportError(rel, err)
	}
	hdr, err := wk.header(rel, st, plain)
	if err != nil {
		return err
	}
	content := fdReader(fd)
	if _, ok := meta[ovlMetacopy]; ok {
		// The upper holds the metadata; the data is in a lower file.
		data, err := wk.metacopyData(parent, baseRel(rel), res)
		if err != nil {
			return exportError(rel, err)
		}
		if data == nil {
			return exportError(rel, fmt.Errorf("metacopy file: data not found in the lower directories"))
		}
		dfd, err := unix.Openat(wk.roots[data.layer], data.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return exportError(rel, fmt.Errorf("metacopy data: %w", err))
		}
		defer unix.Close(dfd)
		hdr.Size, content = data.st.Size, fdReader(dfd)
	}
	return wk.put(rel, &Entry{Path: rel, Header: hdr}, content)
}

// metacopyData finds the file holding a metacopy file's data: the lookup
// inside a redirected directory did already; in the upper, look the name up
// through the parent's layers.
func (wk *walker) metacopyData(parent *dirNode, name string, res *lookupResult) (*found, error) {
	if res != nil {
		return res.data, nil
	}
	if len(wk.roots) == 1 {
		return nil, fmt.Errorf("metacopy file needs the lower directories%s", wk.noLowersReason())
	}
	stack, err := wk.stackOf(parent)
	if err != nil {
		return nil, err
	}
	r, err := wk.lookup(stack, name)
	if err != nil {
		return nil, err
	}
	return r.data, nil
}

// header builds the tar header of a file from its stat and xattrs, with
// ids mapped into the container.
func (wk *walker) header(rel string, st *unix.Stat_t, xattrs map[string]string) (*tar.Header, error) {
	uid, gid, err := wk.o.idMap.ToContainer(int(st.Uid), int(st.Gid))
	if err != nil {
		return nil, exportError(rel, err)
	}
	hdr := &tar.Header{
		Mode:    int64(st.Mode & 0o7777),
		Uid:     uid,
		Gid:     gid,
		ModTime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
	default:
		return nil, exportError(rel, fmt.Errorf("file type %#o: %w", st.Mode&unix.S_IFMT, ErrUnsupportedEntry))
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(xattrs))
		for k, v := range xattrs {
			hdr.PAXRecords[paxSchilyXattr+k] = v
		}
	}
	return hdr, nil
}

// flushPending writes the unchanged directories held back (WithDelta),
// before an entry below them.
func (wk *walker) flushPending() error {
	pend := wk.pending
	wk.pending = nil
	for _, d := range pend {
		if err := wk.put(d.rel, d.e, nil); err != nil {
			return err
		}
	}
	return nil
}

// put hands an entry to the Writer: directly, or through the pipe.
func (wk *walker) put(rel string, e *Entry, content io.Reader) error {
	if err := wk.flushPending(); err != nil {
		return err
	}
	if wk.pipe != nil {
		return wk.pipe.queue(rel, e, content)
	}
	return wk.write(rel, e, content)
}

func (wk *walker) write(rel string, e *Entry, content io.Reader) error {
	switch content.(type) {
	case nil, *dataReader:
		// In memory already.
	default:
		content = ctxReader{ctx: wk.ctx, r: content}
	}
	if err := wk.w.WriteEntry(e, content); err != nil {
		return exportError(rel, err)
	}
	wk.prog.update(wk.w.stats())
	return nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func baseRel(rel string) string { return rel[strings.LastIndexByte(rel, '/')+1:] }

// readDirNames lists the directory open at fd (without "." and ".."), in
// no particular order.
func (wk *walker) readDirNames(fd int) ([]string, error) {
	if wk.direntBuf == nil {
		wk.direntBuf = make([]byte, 64<<10)
	}
	var names []string
	for {
		n, err := unix.Getdents(fd, wk.direntBuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(wk.direntBuf[:n], -1, names)
	}
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
