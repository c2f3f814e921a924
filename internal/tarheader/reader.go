package tarheader

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
)

// Reader is archive/tar's Reader with a fast path: the headers of the
// common case (POSIX ustar blocks, optionally after one PAX extended
// header with the usual records) are parsed here, into the same
// *tar.Header archive/tar returns, and their content is read directly.
// Anything else — a block it does not recognise in every detail, GNU
// long names, sparse files, global headers, the end of the archive, a
// read error — is handed to archive/tar, starting at that header (the
// bytes read for it are read again), so archive/tar decides every error
// and every unusual case. archive/tar spends most of its header parsing
// on format guessing (tests/bench/notes.md, "Where the targets hold").
// TestReader and FuzzReader compare the two on the same streams.
type Reader struct {
	r   io.Reader // the tar stream
	err error     // sticky, as archive/tar's

	// archive/tar, while it reads the current entry (and as long as it
	// must: a sparse entry's data layout is its own), over the bytes read
	// again (again) and r.
	tr    *tar.Reader
	again *bytes.Reader
	// After archive/tar's entry, if it can be left: its padding.
	trPad   int64
	trLeave bool

	// The fast path's current entry: data left and padding after it.
	remain, pad int64

	blk  [BlockSize]byte
	read []byte // the bytes of the headers being parsed, for archive/tar
}

// NewReader reads the tar stream r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Read reads the current entry's content, as tar.Reader.Read.
func (t *Reader) Read(b []byte) (int, error) {
	if t.tr != nil {
		return t.tr.Read(b)
	}
	if t.err != nil {
		return 0, t.err
	}
	if int64(len(b)) > t.remain {
		b = b[:t.remain]
	}
	var n int
	var err error
	if len(b) > 0 {
		n, err = t.r.Read(b)
		t.remain -= int64(n)
	}
	switch {
	case err == io.EOF && t.remain > 0:
		err = io.ErrUnexpectedEOF
	case err == nil && t.remain == 0:
		err = io.EOF
	}
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Next advances to the next entry, as tar.Reader.Next.
func (t *Reader) Next() (*tar.Header, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.tr != nil {
		if !t.trLeave || t.again.Len() > 0 {
			return t.archiveTarNext()
		}
		// archive/tar's entry was a plain one: skip the rest of it as it
		// would, and go on here.
		if _, err := io.Copy(io.Discard, t.tr); err != nil {
			t.err = err
			return nil, err
		}
		t.remain, t.pad = 0, t.trPad
		t.tr, t.again = nil, nil
	}
	if err := t.skip(); err != nil {
		t.err = err
		return nil, err
	}
	t.read = t.read[:0]
	if hdr, ok := t.fastNext(); ok {
		return hdr, nil
	}
	// archive/tar takes it from the start of this header.
	t.again = bytes.NewReader(t.read)
	t.tr = tar.NewReader(io.MultiReader(t.again, t.r))
	return t.archiveTarNext()
}

func (t *Reader) archiveTarNext() (*tar.Header, error) {
	hdr, err := t.tr.Next()
	if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
		t.trLeave = false
		return hdr, err
	}
	// Its padding is known unless the entry is sparse, or a global
	// header (whose size the returned Header does not carry).
	t.trLeave = hdr.Typeflag != tar.TypeGNUSparse && hdr.Typeflag != tar.TypeXGlobalHeader
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			t.trLeave = false
		}
	}
	t.trPad = Padding(dataSize(hdr))
	return hdr, err
}

// skip discards the rest of the current entry and its padding, as
// archive/tar does at the start of Next.
func (t *Reader) skip() error {
	if t.remain > 0 {
		n, err := io.CopyN(io.Discard, t.r, t.remain)
		if err == io.EOF && n < t.remain {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
	}
	if t.pad > 0 {
		n, err := io.ReadFull(t.r, t.blk[:t.pad])
		if err == io.ErrUnexpectedEOF || (err == io.EOF && n < int(t.pad)) {
			err = io.EOF // tryReadFull's
		}
		if err != nil {
			return err
		}
	}
	t.remain, t.pad = 0, 0
	return nil
}

// dataSize is the size of an entry's data in the stream (not sparse).
func dataSize(h *tar.Header) int64 {
	switch h.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return 0
	}
	return h.Size
}

// readBlock reads the next block into t.blk, keeping its bytes for
// archive/tar; false on any short read.
func (t *Reader) readBlock() bool {
	n, err := io.ReadFull(t.r, t.blk[:])
	t.read = append(t.read, t.blk[:n]...)
	return err == nil
}

// fastNext parses the next entry if it is a common one; otherwise it
// reports false, having kept in t.read every byte it read.
func (t *Reader) fastNext() (*tar.Header, bool) {
	if !t.readBlock() || !plainBlock(&t.blk) {
		return nil, false
	}
	format := tar.FormatUSTAR
	var pax map[string]string
	if t.blk[hdrType] == tar.TypeXHeader {
		size, ok := octalField(t.blk[hdrSize : hdrSize+12])
		if !ok || size > maxPAXData {
			return nil, false
		}
		start := len(t.read)
		need := int(size + Padding(size))
		t.read = append(t.read, make([]byte, need)...)
		if n, err := io.ReadFull(t.r, t.read[start:]); err != nil {
			t.read = t.read[:start+n]
			return nil, false
		}
		if pax, ok = parsePAXRecords(t.read[start : start+int(size)]); !ok {
			return nil, false
		}
		if !t.readBlock() || !plainBlock(&t.blk) {
			return nil, false
		}
		format = tar.FormatPAX
	}
	switch t.blk[hdrType] {
	case tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	default:
		return nil, false
	}
	b := &t.blk
	hdr := &tar.Header{Typeflag: b[hdrType], Format: format}
	var ok [7]bool
	hdr.Name = cString(b[hdrName : hdrName+100])
	hdr.Linkname = cString(b[hdrLinkname : hdrLinkname+100])
	hdr.Size, ok[0] = octalField(b[hdrSize : hdrSize+12])
	hdr.Mode, ok[1] = octalField(b[hdrMode : hdrMode+8])
	var uid, gid, mtime int64
	uid, ok[2] = octalField(b[hdrUID : hdrUID+8])
	gid, ok[3] = octalField(b[hdrGID : hdrGID+8])
	mtime, ok[4] = octalField(b[hdrMtime : hdrMtime+12])
	hdr.Uid, hdr.Gid, hdr.ModTime = int(uid), int(gid), time.Unix(mtime, 0)
	hdr.Uname = cString(b[hdrUname : hdrUname+32])
	hdr.Gname = cString(b[hdrGname : hdrGname+32])
	hdr.Devmajor, ok[5] = octalField(b[hdrDevMajor : hdrDevMajor+8])
	hdr.Devminor, ok[6] = octalField(b[hdrDevMinor : hdrDevMinor+8])
	for _, o := range ok {
		if !o {
			return nil, false
		}
	}
	if prefix := cString(b[hdrPrefix : hdrPrefix+155]); prefix != "" {
		hdr.Name = prefix + "/" + hdr.Name
	}
	if pax != nil && !mergePAXRecords(hdr, pax) {
		return nil, false
	}
	if hdr.Size < 0 {
		return nil, false
	}
	t.remain = dataSize(hdr)
	t.pad = Padding(t.remain)
	return hdr, true
}

// plainBlock reports whether b is a ustar header block that archive/tar
// reads without a second thought: valid checksum, "ustar\x00" magic (and
// not star's trailer), ASCII only, numeric fields NUL-terminated octal.
func plainBlock(b *[BlockSize]byte) bool {
	if string(b[hdrMagic:hdrMagic+6]) != "ustar\x00" || string(b[hdrStarTrailer:hdrStarTrailer+4]) == "tar\x00" {
		return false
	}
	var sum int64
	for i, c := range b {
		if c >= 0x80 {
			return false
		}
		if i >= hdrChksum && i < hdrChksum+8 {
			c = ' '
		}
		sum += int64(c)
	}
	stored, ok := octalField(b[hdrChksum : hdrChksum+8])
	if !ok || stored != sum {
		return false
	}
	for _, end := range []int{hdrSize + 11, hdrMode + 7, hdrUID + 7, hdrGID + 7, hdrMtime + 11, hdrDevMajor + 7, hdrDevMinor + 7} {
		if b[end] != 0 {
			return false
		}
	}
	return true
}

// octalField parses a numeric field as archive/tar does when it is octal
// digits padded with NULs and spaces; false for anything else.
func octalField(f []byte) (int64, bool) {
	i, j := 0, len(f)
	for i < j && (f[i] == ' ' || f[i] == 0) {
		i++
	}
	for j > i && (f[j-1] == ' ' || f[j-1] == 0) {
		j--
	}
	if j-i > 20 {
		return 0, false
	}
	var x int64
	for _, c := range f[i:j] {
		if c < '0' || c > '7' {
			return 0, false
		}
		x = x<<3 | int64(c-'0')
	}
	return x, true
}

// cString is a field up to its first NUL.
func cString(f []byte) string {
	if i := bytes.IndexByte(f, 0); i >= 0 {
		f = f[:i]
	}
	return string(f)
}

// parsePAXRecords parses the records of an extended header as archive/tar
// does; false for malformed records and for GNU sparse ones.
func parsePAXRecords(data []byte) (map[string]string, bool) {
	recs := make(map[string]string)
	s := string(data)
	for len(s) > 0 {
		sp := strings.IndexByte(s, ' ')
		if sp <= 0 || sp > 10 {
			return nil, false
		}
		n := 0
		for _, c := range s[:sp] {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		if n < 5 || n > len(s) || n <= sp+1 || s[n-1] != '\n' {
			return nil, false
		}
		k, v, ok := strings.Cut(s[sp+1:n-1], "=")
		if !ok || k == "" || strings.HasPrefix(k, "GNU.sparse.") || !validPAXKeyValue(k, v) {
			return nil, false
		}
		recs[k] = v
		s = s[n:]
	}
	return recs, true
}

// validPAXKeyValue is archive/tar's validPAXRecord.
func validPAXKeyValue(k, v string) bool {
	if strings.Contains(k, "=") {
		return false
	}
	switch k {
	case "path", "linkpath", "uname", "gname":
		return !strings.Contains(v, "\x00")
	}
	return !strings.Contains(k, "\x00")
}

// mergePAXRecords applies the records to hdr as archive/tar's mergePAX
// does; false for values it would refuse or that take its slow path
// (signed or fractional numbers).
func mergePAXRecords(hdr *tar.Header, recs map[string]string) bool {
	for k, v := range recs {
		if v == "" {
			continue
		}
		var ok bool
		switch k {
		case "path":
			hdr.Name, ok = v, true
		case "linkpath":
			hdr.Linkname, ok = v, true
		case "uname":
			hdr.Uname, ok = v, true
		case "gname":
			hdr.Gname, ok = v, true
		case "uid":
			var id int64
			id, ok = decimalField(v)
			hdr.Uid = int(id)
		case "gid":
			var id int64
			id, ok = decimalField(v)
			hdr.Gid = int(id)
		case "size":
			hdr.Size, ok = decimalField(v)
		case "mtime":
			hdr.ModTime, ok = paxTimeField(v)
		case "atime":
			hdr.AccessTime, ok = paxTimeField(v)
		case "ctime":
			hdr.ChangeTime, ok = paxTimeField(v)
		default:
			if x, isXattr := strings.CutPrefix(k, XattrPrefix); isXattr {
				if hdr.Xattrs == nil {
					hdr.Xattrs = make(map[string]string)
				}
				hdr.Xattrs[x] = v //nolint:staticcheck // archive/tar fills it too.
			}
			ok = true
		}
		if !ok {
			return false
		}
	}
	hdr.PAXRecords = recs
	return true
}

// decimalField parses unsigned decimal digits (at most 18).
func decimalField(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && s[0] != '+' && s[0] != '-'
}

// paxTimeField parses "secs[.frac]" (unsigned) as archive/tar's
// parsePAXTime: the fraction's digits beyond nanoseconds are dropped.
func paxTimeField(s string) (time.Time, bool) {
	ss, sn, _ := strings.Cut(s, ".")
	secs, ok := decimalField(ss)
	if !ok {
		return time.Time{}, false
	}
	if sn == "" {
		return time.Unix(secs, 0), true
	}
	var ns int64
	for i := 0; i < len(sn); i++ {
		c := sn[i]
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		if i < 9 {
			ns = ns*10 + int64(c-'0')
		}
	}
	for i := len(sn); i < 9; i++ {
		ns *= 10
	}
	return time.Unix(secs, ns), true
}
