package tarheader

// The encoder produces the bytes archive/tar's Writer.WriteHeader produces
// for the headers an export writes most, without its per-header format
// negotiation (a map, a sorted key list, validation closures, string
// building; its cost: tests/bench/notes.md, "Where the targets hold").
// Anything outside the common case is declined, for archive/tar to write.

import (
	"archive/tar"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Append appends h as archive/tar writes it with Format PAX (a
// PAX extended header if the mtime has nanoseconds or there are xattr
// records, then the ustar header block), or reports false if h is not a
// header it encodes: names or link targets that are not plain ASCII of at
// most 100 bytes, numbers beyond the octal fields, user or group names,
// atime or ctime, other PAX records, other types.
func Append(dst []byte, h *tar.Header) ([]byte, bool) {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if strings.HasSuffix(h.Name, "/") {
			return dst, false
		}
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	default:
		return dst, false
	}
	if h.Format != tar.FormatPAX || !plainField(h.Name) || !plainField(h.Linkname) ||
		h.Uname != "" || h.Gname != "" || len(h.Xattrs) > 0 ||
		!h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || h.Size < 0 {
		return dst, false
	}
	mtime := h.ModTime.Unix()
	if h.ModTime.IsZero() {
		mtime = 0
	}
	if !fitsOctal(8, h.Mode) || !fitsOctal(8, int64(h.Uid)) || !fitsOctal(8, int64(h.Gid)) ||
		!fitsOctal(12, h.Size) || !fitsOctal(12, mtime) ||
		!fitsOctal(8, h.Devmajor) || !fitsOctal(8, h.Devminor) {
		return dst, false
	}

	// PAX records: the mtime if it has nanoseconds, and the xattrs.
	nsec := 0
	if !h.ModTime.IsZero() {
		nsec = h.ModTime.Nanosecond()
	}
	var keys []string
	if len(h.PAXRecords) > 0 {
		keys = make([]string, 0, len(h.PAXRecords)+1)
		for k := range h.PAXRecords {
			if !strings.HasPrefix(k, XattrPrefix) || strings.ContainsAny(k, "=\x00") {
				return dst, false
			}
			keys = append(keys, k)
		}
	}
	if nsec != 0 {
		keys = append(keys, "mtime")
	}
	if len(keys) > 0 {
		slices.Sort(keys)
		start := len(dst)
		dst = append(dst, make([]byte, BlockSize)...) // the extended header, below
		data := len(dst)
		for _, k := range keys {
			v := h.PAXRecords[k]
			if k == "mtime" {
				v = paxTime(mtime, nsec)
			}
			dst = appendPAXRecord(dst, k, v)
		}
		n := len(dst) - data
		if n > maxPAXData {
			return dst[:start], false
		}
		dst = append(dst, make([]byte, Padding(int64(n)))...)
		dir, file := path.Split(h.Name)
		name := strings.TrimRight(truncate(path.Join(dir, "PaxHeaders.0", file), 100), "/")
		b := dst[start : start+BlockSize]
		copy(b[hdrName:], name)
		putOctal(b[hdrMode:hdrMode+8], 0)
		putOctal(b[hdrUID:hdrUID+8], 0)
		putOctal(b[hdrGID:hdrGID+8], 0)
		putOctal(b[hdrSize:hdrSize+12], int64(n))
		putOctal(b[hdrMtime:hdrMtime+12], 0)
		b[hdrType] = tar.TypeXHeader
		finishBlock(b)
	}

	start := len(dst)
	dst = append(dst, make([]byte, BlockSize)...)
	b := dst[start:]
	copy(b[hdrName:], h.Name)
	copy(b[hdrLinkname:], h.Linkname)
	putOctal(b[hdrMode:hdrMode+8], h.Mode)
	putOctal(b[hdrUID:hdrUID+8], int64(h.Uid))
	putOctal(b[hdrGID:hdrGID+8], int64(h.Gid))
	putOctal(b[hdrSize:hdrSize+12], h.Size)
	putOctal(b[hdrMtime:hdrMtime+12], mtime)
	putOctal(b[hdrDevMajor:hdrDevMajor+8], h.Devmajor)
	putOctal(b[hdrDevMinor:hdrDevMinor+8], h.Devminor)
	b[hdrType] = h.Typeflag
	finishBlock(b)
	return dst, true
}

// plainField reports whether s is printable ASCII that fits a 100-byte
// name field.
func plainField(s string) bool {
	if len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c >= 0x80 {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// fitsOctal is archive/tar's fitsInOctal: n-1 octal digits and a NUL.
func fitsOctal(n int, x int64) bool {
	return x >= 0 && x < 1<<(uint(n-1)*3)
}

// putOctal writes x as archive/tar's formatOctal does: zero-padded octal
// digits, then a NUL, in b (all zero).
func putOctal(b []byte, x int64) {
	for i := len(b) - 2; i >= 0; i-- {
		b[i] = byte('0' + x&7)
		x >>= 3
	}
}

// finishBlock sets the ustar magic and version and the checksum.
func finishBlock(b []byte) {
	copy(b[hdrMagic:], "ustar\x0000")
	var sum int64
	for i, c := range b[:BlockSize] {
		if i >= hdrChksum && i < hdrChksum+8 {
			c = ' '
		}
		sum += int64(c)
	}
	putOctal(b[hdrChksum:hdrChksum+7], sum)
	b[hdrChksum+7] = ' '
}

// paxTime is archive/tar's formatPAXTime for a non-negative time with
// nanoseconds.
func paxTime(sec int64, nsec int) string {
	s := strconv.FormatInt(sec, 10) + "." + strconv.FormatInt(int64(1e9+nsec), 10)[1:]
	return strings.TrimRight(s, "0")
}

// appendPAXRecord appends "%d %s=%s\n", the length counting itself.
func appendPAXRecord(dst []byte, k, v string) []byte {
	size := len(k) + len(v) + 3
	size += len(strconv.Itoa(size))
	if n := len(strconv.Itoa(size)) + len(k) + len(v) + 3; n != size {
		size = n
	}
	dst = strconv.AppendInt(dst, int64(size), 10)
	dst = append(dst, ' ')
	dst = append(dst, k...)
	dst = append(dst, '=')
	dst = append(dst, v...)
	return append(dst, '\n')
}
