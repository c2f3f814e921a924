package runtimestate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/procstat"
)

// runcState is the part of runc's <root>/<id>/state.json
// (libcontainer.State) that ocisnap reads.
type runcState struct {
	ID               string            `json:"id"`
	InitProcessPid   int               `json:"init_process_pid"`
	InitProcessStart json.RawMessage   `json:"init_process_start"` // a number; a string before runc 1.0
	CgroupPaths      map[string]string `json:"cgroup_paths"`
	Config           struct {
		Labels []string `json:"labels"` // "bundle=<path>" among them
	} `json:"config"`
}

// crunState is the part of crun's <root>/<id>/status that ocisnap reads.
type crunState struct {
	Pid              int    `json:"pid"`
	ProcessStartTime uint64 `json:"process-start-time"`
	Bundle           string `json:"bundle"`
}

// load reads container id's state from root/id: runc's state.json, else
// crun's status. The container is running if its init process lives and
// started when the runtime recorded (a reused pid is not it).
func load(root, id string) (*Container, error) {
	dir := filepath.Join(root, id)
	rc := &Container{State: specs.State{Version: specs.Version, ID: id}}
	var start uint64
	if data, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil {
		var st runcState
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("container %s: decode %s: %w", id, filepath.Join(dir, "state.json"), err)
		}
		rc.Runtime, rc.StateFile = "runc", filepath.Join(dir, "state.json")
		rc.State.Pid, rc.CgroupPaths = st.InitProcessPid, st.CgroupPaths
		start, _ = strconv.ParseUint(strings.Trim(string(st.InitProcessStart), `"`), 10, 64)
		for _, l := range st.Config.Labels {
			if b, ok := strings.CutPrefix(l, "bundle="); ok {
				rc.State.Bundle = b
			}
		}
	} else if data, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		var st crunState
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("container %s: decode %s: %w", id, filepath.Join(dir, "status"), err)
		}
		rc.Runtime, rc.StateFile = "crun", filepath.Join(dir, "status")
		rc.State.Pid, rc.State.Bundle, start = st.Pid, st.Bundle, st.ProcessStartTime
	} else {
		return nil, fmt.Errorf("container %s: %w: %s has neither runc's state.json nor crun's status", id, ErrNoContainer, dir)
	}
	if rc.State.Bundle == "" {
		return nil, fmt.Errorf("container %s: %s does not name the bundle", id, rc.StateFile)
	}
	rc.State.Status = specs.StateStopped
	if rc.State.Pid > 0 && (start == 0 || procstat.Alive(rc.State.Pid, start)) {
		if _, err := procstat.StartTime(rc.State.Pid); err == nil {
			rc.State.Status = specs.StateRunning
		}
	}
	return rc, nil
}
