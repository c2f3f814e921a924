package hookcli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/containerid"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// Stages. prestart (deprecated) and createRuntime run in the runtime's
// namespaces after the container's namespaces exist and before pivot_root;
// createContainer runs inside the container's mount namespace; poststop runs
// in the runtime's namespaces after the container is deleted.
const (
	StagePrestart        = "prestart"
	StageCreateRuntime   = "createRuntime"
	StageCreateContainer = "createContainer"
	StagePoststop        = "poststop"
)

// KeyPrefix is the prefix of every annotation key of ocisnap, its NRI
// plugin's stamps (io.ocisnap.nri.*) included.
const KeyPrefix = "io.ocisnap."

// Relevant reports whether any annotation asks something of ocisnap: any
// io.ocisnap.* key (typos included, so that the engine refuses them), and
// gVisor's restore key with --gvisor-compat.
func Relevant(ann map[string]string, gvisorCompat bool) bool {
	if gvisorCompat {
		return ocistate.HasAny(ann, KeyPrefix, ocistate.AnnotationGVisorRestore)
	}
	return ocistate.HasAny(ann, KeyPrefix)
}

// Stage returns the forced stage, or the stage implied by the status:
// runc says "creating" for prestart/createRuntime/createContainer, crun
// "created"; runc, crun and Podman say "stopped" at poststop.
func Stage(forced string, st *specs.State) (string, error) {
	switch forced {
	case StagePrestart, StageCreateRuntime, StageCreateContainer, StagePoststop:
		return forced, nil
	case "":
	default:
		return "", fmt.Errorf("unknown stage %q (want prestart, createRuntime, createContainer or poststop)", forced)
	}
	switch st.Status {
	case specs.StateCreating, specs.StateCreated:
		return StageCreateRuntime, nil
	case specs.StateStopped:
		return StagePoststop, nil
	}
	return "", fmt.Errorf("status %q: not a stage ocisnap acts in (give the stage as an argument)", st.Status)
}

// StateFile is the file of container id's record in the state directory
// dir (pkg/statefile's naming; hooks' tests check that they agree).
func StateFile(dir, id string) string {
	return filepath.Join(dir, id+".json")
}

// Noop reports whether the engine has nothing to do for this invocation:
// the state is valid, the stage known, no annotation asks anything of
// ocisnap, and, at poststop, no state record of the container exists (a
// container created with annotations whose poststop state carries none:
// the record tells). It is hooks.Run's own rule; anything the gate cannot
// tell for sure (an invalid state, an unknown stage, an unreadable state
// directory) is not a no-op, and the engine then reports or decides it.
func Noop(state []byte, forcedStage string, s *Settings) bool {
	st, err := ocistate.ReadState(bytes.NewReader(state))
	if err != nil {
		return false
	}
	stage, err := Stage(forcedStage, st)
	if err != nil || Relevant(st.Annotations, s.Policy.GVisorCompat) {
		return false
	}
	if stage != StagePoststop {
		return true
	}
	if containerid.Validate(st.ID) != nil {
		return false
	}
	dir := s.StateDir
	if dir == "" {
		dir = DefaultStateDir
	}
	_, err = os.Lstat(StateFile(dir, st.ID))
	return errors.Is(err, fs.ErrNotExist)
}
