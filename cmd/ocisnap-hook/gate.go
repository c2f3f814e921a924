package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
)

// maxInline bounds the state the gate holds in memory to decide: an OCI
// state is a few KiB. A larger one goes to the engine unread past it.
const maxInline = 1 << 20

// enginePath is the engine beside the gate's own executable.
func enginePath() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate %s: %w", hookcli.EngineName, err)
	}
	return filepath.Join(filepath.Dir(self), hookcli.EngineName), nil
}

// gate reads the container state from stdin and returns nil when there is
// nothing to do; otherwise it execs engine with argv and env and the same
// state bytes on stdin, and returns only if that failed.
func gate(stdin *os.File, stage string, s *hookcli.Settings, engine string, argv, env []string) error {
	state, err := io.ReadAll(io.LimitReader(stdin, maxInline+1))
	if err != nil {
		return fmt.Errorf("read the container state: %w", err)
	}
	if len(state) <= maxInline && hookcli.Noop(state, stage, s) {
		return nil
	}
	if err := stateOnStdin(state, stdin); err != nil {
		return fmt.Errorf("pass the container state to %s: %w", engine, err)
	}
	return execEngine(engine, argv, env)
}

// execEngine execs engine with argv and env: exec, not fork, for the
// runtime waits for this pid. It returns only if the exec failed.
func execEngine(engine string, argv, env []string) error {
	if err := unix.Exec(engine, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", engine, err)
	}
	return nil // not reached
}

// stateOnStdin makes fd 0 a sealed memfd holding head and what is left of
// rest, read from its start; without memfd (an old kernel), a pipe holding
// head when all of it fits in the pipe's buffer.
func stateOnStdin(head []byte, rest *os.File) error {
	fd, err := unix.MemfdCreate("ocisnap-state", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		if len(head) > maxInline {
			return fmt.Errorf("memfd_create: %w", err)
		}
		return pipeOnStdin(head, err)
	}
	// Raw writes, no *os.File: its finalizer would close fd.
	if err := writeAll(fd, head); err != nil {
		return fmt.Errorf("write memfd: %w", err)
	}
	if len(head) > maxInline {
		buf := make([]byte, 1<<16)
		for {
			n, err := rest.Read(buf)
			if werr := writeAll(fd, buf[:n]); werr != nil {
				return fmt.Errorf("write memfd: %w", werr)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read the container state: %w", err)
			}
		}
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS,
		unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("seal memfd: %w", err)
	}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return fmt.Errorf("seek memfd: %w", err)
	}
	return onStdin(fd)
}

// pipeOnStdin is stateOnStdin through a pipe, for a state that fits in
// its buffer (so that writing it all before the exec cannot block).
func pipeOnStdin(state []byte, memfdErr error) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("memfd_create: %w; pipe: %w", memfdErr, err)
	}
	size, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0)
	if err != nil || len(state) > size {
		return fmt.Errorf("memfd_create: %w; the state (%d bytes) does not fit in a pipe", memfdErr, len(state))
	}
	if err := writeAll(p[1], state); err != nil {
		return fmt.Errorf("write pipe: %w", err)
	}
	unix.Close(p[1])
	return onStdin(p[0])
}

// onStdin makes fd the process's fd 0, kept across exec.
func onStdin(fd int) error {
	if fd == 0 {
		_, err := unix.FcntlInt(0, unix.F_SETFD, 0)
		return err
	}
	if err := unix.Dup3(fd, 0, 0); err != nil {
		return fmt.Errorf("dup3 onto stdin: %w", err)
	}
	return nil
}

// writeAll writes all of b to fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
