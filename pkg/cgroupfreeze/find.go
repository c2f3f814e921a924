package cgroupfreeze

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// FromPaths returns the cgroup named by a runtime's record of a
// container's cgroup paths: runc's state.json "cgroup_paths", which maps
// each v1 controller to its directory, or "" to the v2 directory. The v1
// freezer is preferred when both are given (a hybrid host, where runc uses
// v1).
func FromPaths(paths map[string]string) (*Cgroup, error) {
	if p := paths["freezer"]; p != "" {
		return Open(p)
	}
	if p, ok := paths[""]; ok && p != "" {
		return Open(p)
	}
	return nil, fmt.Errorf("%w: no freezer or unified cgroup path among %d recorded", ErrNoFreezer, len(paths))
}

// ForPid returns the cgroup of process pid (a container's init process),
// read from /proc/<pid>/cgroup and located in the mount table: the v1
// freezer hierarchy when it is mounted, the v2 hierarchy otherwise.
func ForPid(pid int) (*Cgroup, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroup of process %d: %w", pid, err)
	}
	defer f.Close()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("cgroup of process %d: %w", pid, err)
	}
	dir, err := cgroupDir(f, mounts)
	if err != nil {
		return nil, fmt.Errorf("cgroup of process %d: %w", pid, err)
	}
	return Open(dir)
}

// cgroupDir finds the directory of the cgroup described by a
// /proc/<pid>/cgroup file (cgroups(7): "hierarchy-ID:controller-list:
// cgroup-path") among the mounted cgroup hierarchies.
func cgroupDir(procCgroup io.Reader, mounts []*mountinfo.Info) (string, error) {
	var v1, v2 string
	hasV1, hasV2 := false, false
	sc := bufio.NewScanner(procCgroup)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, hasV2 = parts[2], true
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), "freezer") {
			v1, hasV1 = parts[2], true
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if hasV1 {
		for _, m := range mounts {
			if m.FSType == "cgroup" && slices.Contains(strings.Split(m.VFSOptions, ","), "freezer") {
				return within(m, v1)
			}
		}
	}
	if hasV2 {
		for _, m := range mounts {
			if m.FSType == "cgroup2" {
				return within(m, v2)
			}
		}
	}
	return "", fmt.Errorf("%w: no mounted freezer hierarchy holds the process (v1 freezer line: %t, v2 line: %t)",
		ErrNoFreezer, hasV1, hasV2)
}

// within maps a cgroup path to a directory under the hierarchy mounted at
// m. The mount's root is the part of the hierarchy it shows (not "/" when a
// subtree is bind-mounted, or inside a cgroup namespace).
func within(m *mountinfo.Info, cgPath string) (string, error) {
	root := path.Clean("/" + m.Root)
	p := path.Clean("/" + cgPath)
	rel := strings.TrimPrefix(p, root)
	if root != "/" && p != root && !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("%w: cgroup %s is outside the part %s of the hierarchy mounted at %s",
			ErrNoFreezer, p, root, m.Mountpoint)
	}
	if root == "/" {
		rel = p
	}
	return filepath.Join(m.Mountpoint, rel), nil
}
