package view

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// loopRE is what a recorded loop device must look like before Release
// opens it. Compiled on first use, not at start-up: every hook run links
// this package, most never release a view.
var loopRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/dev/loop[0-9]+$`) })

// attachLoop attaches backing to a free loop device, read-only and with
// autoclear (the kernel detaches the device when its last user closes it:
// the mount at release, or this process if it dies before mounting), and
// returns the device, open. record is called with the device's path before
// it is configured. Another process may take the same free device first:
// then the next one is tried.
//
// LOOP_CONFIGURE (Linux 5.8) attaches and sets the flags in one step;
// before it, LOOP_SET_FD (read-only because backing is open read-only)
// then LOOP_SET_STATUS64 for autoclear.
func attachLoop(ctx context.Context, backing *os.File, record func(dev string) error) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop device: %w", err)
	}
	defer ctl.Close()
	for range 100 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop device: LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if err := record(dev); err != nil {
			return nil, err
		}
		lf, err := openLoop(dev)
		if err != nil {
			return nil, err
		}
		err = configureLoop(lf, backing)
		if errors.Is(err, unix.EBUSY) {
			lf.Close()
			continue
		}
		if err != nil {
			lf.Close()
			return nil, fmt.Errorf("attach %s: %w", dev, err)
		}
		return lf, nil
	}
	return nil, errors.New("loop device: no free device after 100 attempts")
}

// openLoop opens a loop device, waiting a little for its node to appear
// (LOOP_CTL_GET_FREE may have just created the device).
func openLoop(dev string) (*os.File, error) {
	for i := 0; ; i++ {
		f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 50 {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func configureLoop(lf, backing *os.File) error {
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], backing.Name())
	err := unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	if err := unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return err
	}
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
	copy(info.File_name[:len(info.File_name)-1], backing.Name())
	if err := unix.IoctlLoopSetStatus64(int(lf.Fd()), &info); err != nil {
		unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}

// detachLoop detaches dev if it is still attached to the file at
// backingPath (same device and inode): a recorded device that another
// container got meanwhile is left alone. A busy device is only marked
// autoclear by the kernel.
func detachLoop(dev, backingPath string) error {
	if !loopRE().MatchString(dev) {
		return fmt.Errorf("recorded loop device %q is not a loop device path", dev)
	}
	lf, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loop device: %w", err)
	}
	defer lf.Close()
	info, err := unix.IoctlLoopGetStatus64(int(lf.Fd()))
	if errors.Is(err, unix.ENXIO) {
		return nil // not attached
	}
	if err != nil {
		return fmt.Errorf("%s: LOOP_GET_STATUS64: %w", dev, err)
	}
	var st unix.Stat_t
	if backingPath == "" || unix.Stat(backingPath, &st) != nil || st.Dev != info.Device || st.Ino != info.Inode {
		return nil // not ours (or the image is gone; autoclear will do)
	}
	err = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
	if err != nil && !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%s: LOOP_CLR_FD: %w", dev, err)
	}
	return nil
}
