package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestWriteBehind: a large replacement being written is handed to the
// disk as it grows (writeBehind), not left dirty for Commit's fsync. The
// pages of the first 16 MiB of 24 MiB written are clean (written back)
// within a second, long before the kernel's own 30 s expiry would write
// them.
func TestWriteBehind(t *testing.T) {
	dir, err := os.MkdirTemp("/var/tmp", "atomicfile-wb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		testutil.SkipOrFail(t, "/var/tmp is not on a disk file system (type %#x): no writeback to observe", st.Type)
	}
	f, err := Create(openRoot(t, dir), "big", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	chunk := bytes.Repeat([]byte{0x5a}, 1<<20)
	for range 24 {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	var cs unix.Cachestat_t
	head := unix.CachestatRange{Off: 0, Len: 16 << 20}
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Cachestat(uint(f.f.Fd()), &head, &cs, 0)
		if errors.Is(err, unix.ENOSYS) {
			testutil.SkipOrFail(t, "cachestat(2) not supported by this kernel")
		}
		if err != nil {
			t.Fatal(err)
		}
		if cs.Dirty == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first 16 MiB of the temporary file: %d pages still dirty (%d under writeback) 1s after they were written", cs.Dirty, cs.Writeback)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
}
