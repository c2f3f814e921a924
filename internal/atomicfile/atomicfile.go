// Package atomicfile replaces a file so that a reader sees the old content
// or the new, whole, never a mix or a part, even across a crash: the bytes
// go to a temporary file in the same directory, which is synced, renamed
// over the name, and the directory synced. It is the one such writer of the
// project (snapshots, pkg/location; per-container records, pkg/statefile).
//
// Temporary files are hidden and unique (".<name>.ocisnap-tmp-<16 hex
// digits>", the name shortened to fit NAME_MAX), and flocked for as long as
// they are written, so that CleanStale can tell a dead writer's (killed at a
// hook timeout, say) from a live one's. A failed or aborted write removes
// its temporary file and leaves the old file untouched.
//
// The directory is an *os.Root the caller opened: nothing is resolved
// outside it, and names are single path components. Whether the directory
// may be written to is the caller's decision (pkg/policy for snapshots).
// Do not use it for files that need no crash safety: it costs two fsyncs.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// TempInfix and tempRandLen shape temporary names:
// ".<name>.ocisnap-tmp-<hex>".
const (
	TempInfix   = ".ocisnap-tmp-"
	tempRandLen = 16 // hex digits
	// nameMax is NAME_MAX of Linux file systems, in bytes.
	nameMax = 255
	// maxBaseLen is the longest part of name kept in a temporary name.
	maxBaseLen = nameMax - 1 - len(TempInfix) - tempRandLen
)

// maxAttempts bounds the retries of Create when a temporary name is taken
// or its file is removed by a concurrent stale-file cleaner.
const maxAttempts = 10

// File is a replacement of a file being written. Write to it, then Commit
// (or Abort). It is not safe for concurrent use.
type File struct {
	dir  *os.Root // the caller's
	dirf *os.File // the same directory, for flock and fsync
	name string
	tmp  string   // "" once renamed or removed
	f    *os.File // the temporary file, flocked while open
	// written is the size so far, behind the offset up to which writeback
	// was started (see wrote).
	written, behind int64
}

// writeBehind is how much written data is left for the kernel to write
// back at its own pace before the File starts its writeback: a large file
// is on the disk by the time Commit syncs it, its writeback overlapping
// the writer's work instead of following it (measured in tests/bench/notes.md).
const writeBehind = 8 << 20

// wrote counts n more bytes written and starts the writeback of the last
// writeBehind bytes when that much has accumulated.
func (f *File) wrote(n int64) {
	f.written += n
	if f.written-f.behind >= writeBehind {
		startWriteback(f.f, f.behind, f.written-f.behind)
		f.behind = f.written
	}
}

// Create starts replacing name in dir: a new temporary file with mode perm,
// exclusively flocked. dir must stay open until Commit or Abort.
func Create(dir *os.Root, name string, perm fs.FileMode) (*File, error) {
	if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, fmt.Errorf("atomicfile: %q is not a file name", name)
	}
	dirf, err := dir.Open(".")
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	for range maxAttempts {
		tmp := tempName(name)
		f, err := dir.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			dirf.Close()
			return nil, fmt.Errorf("create temporary file: %w", err)
		}
		if err := flock(f, lockEx); err != nil {
			f.Close()
			dir.Remove(tmp)
			dirf.Close()
			return nil, fmt.Errorf("lock temporary file: %w", err)
		}
		// A cleaner may have locked and removed the file between our open
		// and our flock (it took it for a dead writer's): start over.
		if fi, err := f.Stat(); err != nil || linkCount(fi) == 0 {
			f.Close()
			continue
		}
		return &File{dir: dir, dirf: dirf, name: name, tmp: tmp, f: f}, nil
	}
	dirf.Close()
	return nil, fmt.Errorf("could not create a temporary file in %d attempts", maxAttempts)
}

// TempName is the temporary file's name in the directory ("" after Commit
// or Abort), for messages.
func (f *File) TempName() string { return f.tmp }

func (f *File) Write(b []byte) (int, error) {
	if f.f == nil {
		return 0, os.ErrClosed
	}
	n, err := f.f.Write(b)
	f.wrote(int64(n))
	if err != nil {
		err = fmt.Errorf("write temporary file %s: %w", f.tmp, err)
	}
	return n, err
}

// ReadFrom appends what r yields; a file's content goes file to file in the
// kernel (os.File.ReadFrom: copy_file_range), no copy through user memory.
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	if f.f == nil {
		return 0, os.ErrClosed
	}
	n, err := f.f.ReadFrom(r)
	f.wrote(n)
	if err != nil {
		err = fmt.Errorf("write temporary file %s: %w", f.tmp, err)
	}
	return n, err
}

// Commit fsyncs the temporary file, renames it over the name and fsyncs the
// directory. The rename and the directory sync run under an exclusive
// flock of the directory, so that concurrent commits to it are serialised;
// the last one wins, whole. If Commit fails before the rename, the
// temporary file is removed and the old file untouched; if only the final
// directory sync fails, the new file is in place but its durability is not
// known, and the error says so. Either way the File is done.
func (f *File) Commit() error {
	if f.f == nil {
		return os.ErrClosed
	}
	if err := f.commit(); err != nil {
		return errors.Join(err, f.discard())
	}
	return f.release()
}

func (f *File) commit() error {
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync temporary file %s: %w", f.tmp, err)
	}
	if err := flock(f.dirf, lockEx); err != nil {
		return fmt.Errorf("lock directory: %w", err)
	}
	defer flock(f.dirf, lockUn)
	if err := f.dir.Rename(f.tmp, f.name); err != nil {
		return fmt.Errorf("rename temporary file into place: %w", err)
	}
	f.tmp = "" // nothing left to discard
	if err := f.dirf.Sync(); err != nil {
		return fmt.Errorf("renamed into place, but syncing the directory failed: %w", err)
	}
	return nil
}

// Abort removes the temporary file; the old file is untouched. After
// Commit or Abort it does nothing.
func (f *File) Abort() error {
	if f.f == nil {
		return nil
	}
	return f.discard()
}

// discard removes the temporary file (still holding its lock, so that no
// cleaner mistakes it for a dead writer's meanwhile) and releases all.
func (f *File) discard() error {
	var err error
	if f.tmp != "" {
		if rerr := f.dir.Remove(f.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("remove temporary file: %w", rerr)
		}
		f.tmp = ""
	}
	return errors.Join(err, f.release())
}

func (f *File) release() error {
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.dirf.Close()
	f.f = nil
	if err != nil {
		return fmt.Errorf("close temporary file: %w", err)
	}
	return nil
}

// WriteFile replaces name in dir with data (mode perm), atomically.
func WriteFile(dir *os.Root, name string, data []byte, perm fs.FileMode) error {
	f, err := Create(dir, name, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Abort())
	}
	return f.Commit()
}

func tempPrefix(name string) string {
	if len(name) > maxBaseLen {
		name = name[:maxBaseLen]
	}
	return "." + name + TempInfix
}

func tempName(name string) string {
	var b [tempRandLen / 2]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return tempPrefix(name) + hex.EncodeToString(b[:])
}

// IsTemp reports whether name has the form of a temporary file of this
// package, for any file.
func IsTemp(name string) bool { return isTempOf(name, "") }

// isTempOf reports whether name is a temporary file for base ("" means for
// any base).
func isTempOf(name, base string) bool {
	if !strings.HasPrefix(name, ".") || len(name) < 1+len(TempInfix)+tempRandLen {
		return false
	}
	suffix := name[len(name)-tempRandLen:]
	if _, err := hex.DecodeString(suffix); err != nil || strings.ToLower(suffix) != suffix {
		return false
	}
	rest := name[:len(name)-tempRandLen]
	if base != "" {
		return rest == tempPrefix(base)
	}
	rest, ok := strings.CutSuffix(rest, TempInfix)
	return ok && len(rest) > 1
}
