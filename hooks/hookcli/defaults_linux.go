package hookcli

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	mobyuser "github.com/moby/sys/user"
)

// HostUID returns the host uid this process really runs as: its euid, or,
// inside a user namespace (rootless Podman runs runc and the hooks as uid 0
// of the user's namespace), the host uid that namespace's uid 0 maps to.
// It reports false when the process is real root on the host.
func HostUID() (int, bool) {
	maps, err := mobyuser.CurrentProcessUIDMap()
	if err != nil {
		maps = nil // no /proc: the euid is all there is
	}
	return ToParentUID(os.Geteuid(), maps)
}

// ToParentUID maps uid through the entries of a /proc/<pid>/uid_map
// (user_namespaces(7)) to the parent namespace's uid, and reports whether
// that is not root. A uid no entry covers stays as it is.
func ToParentUID(uid int, maps []mobyuser.IDMap) (int, bool) {
	for _, m := range maps {
		if int64(uid) >= m.ID && int64(uid) < m.ID+m.Count {
			host := int(m.ParentID + int64(uid) - m.ID)
			return host, host != 0
		}
	}
	return uid, uid != 0
}

// UserDefaults returns the per-user state dir, allowed snapshot dir and
// view dir of a rootless user: $XDG_RUNTIME_DIR/ocisnap (else
// /run/user/<uid>/ocisnap), $XDG_DATA_HOME/ocisnap (else
// ~/.local/share/ocisnap) and $XDG_DATA_HOME/ocisnap-views (else
// ~/.local/share/ocisnap-views). Engines may run hooks with an empty
// environment, so the home comes from the user database when $HOME is not
// set.
func UserDefaults(uid int) (stateDir, allowDir, viewDir string) {
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
