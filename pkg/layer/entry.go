package layer

import "archive/tar"

// Entry is one change in a snapshot, independent of the whiteout format it
// was read from or will be written in. Reader yields Entries; Writer encodes
// them; Apply and Write are built on the two.
type Entry struct {
	// Path is the cleaned path relative to the layer root, without a
	// leading "./" or "/" and without a trailing slash; "" is the root
	// itself. It never contains ".." elements (Reader refuses such names).
	Path string

	// Header is the entry's tar header with Name normalized to Path (plus
	// "./" prefix and "/" suffix for directories as written), overlay
	// xattrs removed from PAXRecords. Nil for a marker-only Opaque entry.
	//
	// For a hard link, Header.Linkname is a cleaned relative path like Path.
	Header *tar.Header

	// Whiteout means Path is deleted. Header is the whiteout's header as
	// read (char 0/0 or .wh. file, or the hard link to one); writers ignore
	// its metadata and write a canonical whiteout.
	Whiteout bool

	// Opaque means the directory at Path hides all lower contents. Set on a
	// directory entry (overlay format) or on a marker-only entry with a nil
	// Header (OCI format's .wh..wh..opq).
	Opaque bool
}
