package hooks

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// hostUID returns the host uid this process really runs as: its euid, or,
// inside a user namespace (rootless Podman runs runc and the hooks as uid 0
// of the user's namespace), the host uid that namespace's uid 0 maps to.
// It reports false when the process is real root on the host.
func hostUID() (int, bool) {
	euid := os.Geteuid()
	f, err := os.Open("/proc/self/uid_map")
	if err != nil {
		return euid, euid != 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		inside, err1 := strconv.ParseUint(fs[0], 10, 32)
		outside, err2 := strconv.ParseUint(fs[1], 10, 32)
		size, err3 := strconv.ParseUint(fs[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if uint64(euid) >= inside && uint64(euid) < inside+size {
			host := int(outside + uint64(euid) - inside)
			return host, host != 0
		}
	}
	return euid, euid != 0
}

// userDefaults returns the per-user state dir, allowed snapshot dir and
// view dir of a rootless user: $XDG_RUNTIME_DIR/ocisnap (else
// /run/user/<uid>/ocisnap), $XDG_DATA_HOME/ocisnap (else
// ~/.local/share/ocisnap) and $XDG_DATA_HOME/ocisnap-views (else
// ~/.local/share/ocisnap-views). Engines may run hooks with an empty
// environment, so the home comes from the user database when $HOME is not
// set.
func userDefaults(uid int) (stateDir, allowDir, viewDir string) {
	runtimeDir := os.Getenv("XDG_RUNTIME_DIR")
	if runtimeDir == "" {
		runtimeDir = fmt.Sprintf("/run/user/%d", uid)
	}
	dataHome := os.Getenv("XDG_DATA_HOME")
	if dataHome == "" {
		home := os.Getenv("HOME")
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && (home == "" || home == "/" || os.Geteuid() == 0) {
			home = u.HomeDir
		}
		dataHome = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(runtimeDir, "ocisnap"), filepath.Join(dataHome, "ocisnap"), filepath.Join(dataHome, "ocisnap-views")
}
