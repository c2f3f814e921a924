package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cleanups undoes, last first, every mount, loop device and scratch
// directory the benchmark made, also on error and on SIGINT/SIGTERM.
var cleanups struct {
	mu      sync.Mutex
	fns     []func()
	stopped bool // by a signal: nothing new may be left behind
}

// onCleanup registers fn and returns a function that runs it now (once)
// and forgets it. After a signal it undoes what fn is for at once and
// parks the caller until the process exits.
func onCleanup(fn func()) (runNow func()) {
	cleanups.mu.Lock()
	var once sync.Once
	f := func() { once.Do(fn) }
	if cleanups.stopped {
		cleanups.mu.Unlock()
		f()
		select {}
	}
	cleanups.fns = append(cleanups.fns, f)
	cleanups.mu.Unlock()
	return f
}

func cleanupAll() {
	cleanups.mu.Lock()
	fns := cleanups.fns
	cleanups.fns = nil
	cleanups.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// stopAll is cleanupAll for a signal: later registrations undo themselves.
func stopAll() {
	cleanups.mu.Lock()
	cleanups.stopped = true
	cleanups.mu.Unlock()
	cleanupAll()
}

func sh(name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// unmount unmounts dir, retrying while it is busy (a child that just
// exited may still hold it), then lazily.
func unmount(dir string) {
	for i := 0; i < 50; i++ {
		err := unix.Unmount(dir, 0)
		if err == nil || err == unix.EINVAL || err == unix.ENOENT {
			return
		}
		if err != unix.EBUSY {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		fmt.Fprintf(os.Stderr, "ocisnap-bench: unmount %s: %v\n", dir, err)
	}
}

// loopFS is a fresh ext4 filesystem in a sparse image file, loop mounted:
// the root filesystem of a shared machine slows down after mass deletions
// (ext4 with discard), a fresh one per workload does not.
type loopFS struct {
	img, dir string
	release  func()
}

func newLoopFS(workdir, name string, size int64, directIO bool) (*loopFS, error) {
	l := &loopFS{img: filepath.Join(workdir, name+".img"), dir: filepath.Join(workdir, name)}
	// Leftovers of an interrupted run.
	unmount(l.dir)
	detachLoops(l.img)
	os.Remove(l.img)
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(l.img)
	if err != nil {
		return nil, err
	}
	if directIO && fullImages {
		// Every block of the image allocated and written on the host now:
		// a sparse image makes the host file system allocate under the
		// tools' writes, the cost of the image and not of the tools.
		err = writeZeros(f, size)
	} else {
		err = f.Truncate(size)
	}
	f.Close()
	if err != nil {
		return nil, err
	}
	l.release = onCleanup(func() {
		unmount(l.dir)
		detachLoops(l.img)
		os.Remove(l.img)
		if !isMountpoint(l.dir) {
			os.RemoveAll(l.dir) // directories a run interrupted by a signal made
		}
	})
	// Inode tables and journal initialized now, not by ext4lazyinit in
	// the background while tools are timed.
	if err := sh("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", "-i", "8192", l.img); err != nil {
		l.release()
		return nil, err
	}
	if !directIO {
		if err := sh("mount", "-o", "loop", l.img, l.dir); err != nil {
			l.release()
			return nil, err
		}
		return l, nil
	}
	// On a disk, the loop device does direct I/O to its image: no second
	// copy of every written page in the page cache, whose dirty pages
	// would double and throttle the tools on a 2 GiB workload.
	out, err := exec.Command("losetup", "--find", "--show", "--direct-io=on", l.img).Output()
	if err != nil {
		l.release()
		return nil, fmt.Errorf("losetup %s: %w", l.img, err)
	}
	if err := sh("mount", strings.TrimSpace(string(out)), l.dir); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

func (l *loopFS) Close() { l.release() }

// writeZeros writes size bytes of zeros to f, 4 MiB at a time, and syncs
// them (like dd if=/dev/zero bs=4M conv=fsync).
func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; {
		n := int(min(int64(len(buf)), size-off))
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
	return f.Sync()
}

// detachLoops detaches loop devices still backed by img (mount -o loop
// sets autoclear, so normally there are none).
func detachLoops(img string) {
	out, err := exec.Command("losetup", "-j", img, "-O", "NAME", "-n").Output()
	if err != nil {
		return
	}
	for _, dev := range strings.Fields(string(out)) {
		_ = sh("losetup", "-d", dev)
	}
}

// overlay is an overlay mount of lower with a fresh upper, like a
// container's rootfs.
type overlay struct {
	base, upper, work, merged string
	release                   func()
}

func mountOverlay(base string, lowers ...string) (*overlay, error) {
	o := &overlay{base: base, upper: filepath.Join(base, "upper"), work: filepath.Join(base, "work"), merged: filepath.Join(base, "merged")}
	for _, d := range []string{o.upper, o.work, o.merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), o.upper, o.work)
	if err := unix.Mount("overlay", o.merged, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("mount overlay at %s: %w", o.merged, err)
	}
	o.release = onCleanup(func() { unmount(o.merged) })
	return o, nil
}

// unmount unmounts the overlay, keeping upper.
func (o *overlay) unmount() { o.release() }

// remove unmounts the overlay and removes its directories.
func (o *overlay) remove() error {
	o.release()
	return removeAll(o.base)
}

func removeAll(dir string) error {
	return sh("rm", "-rf", "--one-file-system", dir)
}

// isMountpoint reports whether dir is a mount point (or cannot be
// checked): its device differs from its parent's.
func isMountpoint(dir string) bool {
	var st, pst unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &pst) != nil {
		return true
	}
	return st.Dev != pst.Dev
}
