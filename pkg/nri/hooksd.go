package nri

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	podmanhooks "go.podman.io/common/pkg/hooks"
	current "go.podman.io/common/pkg/hooks/1.0.0"
)

// DefaultHooksDirs are the hooks.d directories read when none is named:
// the packages' directory, then the administrator's override directory (a
// file there replaces the one of the same name), as CRI-O and Podman read
// them.
var DefaultHooksDirs = []string{podmanhooks.DefaultDir, podmanhooks.OverrideDir}

// HooksDir is the set of ocisnap hooks.d files (ocisnap*.json) in a list of
// directories, read again whenever a file of it changes (looked at on each
// match: a handful of stat calls). Other vendors' files in the same
// directories are ignored: the plugin brings ocisnap's hooks only.
type HooksDir struct {
	dirs []string
	log  *logrus.Logger

	mu    sync.Mutex
	stamp string
	hooks []namedHook
}

type namedHook struct {
	name string
	hook *current.Hook
}

// NewHooksDir returns the hooks.d files of dirs (later directories override
// files of the same name in earlier ones). Problems reading them are logged
// to log, not returned: a bad or missing file makes no hook match.
func NewHooksDir(dirs []string, log *logrus.Logger) *HooksDir {
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &HooksDir{dirs: dirs, log: log}
}

// files lists the ocisnap*.json files, later directories winning, and a
// stamp that changes when any of them (or the set) changes.
func (h *HooksDir) files() (map[string]string, string) {
	paths := map[string]string{}
	var b strings.Builder
	for _, d := range h.dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			fmt.Fprintf(&b, "%s:%v;", d, os.IsNotExist(err))
			continue
		}
		for _, e := range ents {
			n := e.Name()
			if !strings.HasPrefix(n, "ocisnap") || !strings.HasSuffix(n, ".json") {
				continue
			}
			p := filepath.Join(d, n)
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			paths[n] = p
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return paths, b.String()
}

// load reads the files again if they changed since the last call.
func (h *HooksDir) load() []namedHook {
	h.mu.Lock()
	defer h.mu.Unlock()
	paths, stamp := h.files()
	if stamp == h.stamp && h.stamp != "" {
		return h.hooks
	}
	var hooks []namedHook
	for n, p := range paths {
		hk, err := podmanhooks.Read(p, nil)
		if err != nil {
			h.log.Errorf("hooks.d file %s: %v (ignored)", p, err)
			continue
		}
		hooks = append(hooks, namedHook{name: n, hook: hk})
	}
	sort.Slice(hooks, func(i, j int) bool { return strings.ToLower(hooks[i].name) < strings.ToLower(hooks[j].name) })
	names := make([]string, len(hooks))
	for i, nh := range hooks {
		names[i] = nh.name
	}
	h.log.Infof("hooks.d: loaded %v from %v", names, h.dirs)
	h.stamp, h.hooks = stamp, hooks
	return hooks
}

// Match returns the hooks of the files whose "when" rules match a container
// with spec (its process args are what "commands" matches), annotations and
// bind mounts or not, in the files' name order, each in the stages its file
// names, and the names of the matching files. It returns nil hooks when no
// file matches.
func (h *HooksDir) Match(spec *rspec.Spec, annotations map[string]string, hasBindMounts bool) (*rspec.Hooks, []string, error) {
	var out *rspec.Hooks
	var names []string
	for _, nh := range h.load() {
		ok, err := nh.hook.When.Match(spec, annotations, hasBindMounts)
		if err != nil {
			return nil, nil, fmt.Errorf("hooks.d file %s: %w", nh.name, err)
		}
		if !ok {
			continue
		}
		if out == nil {
			out = &rspec.Hooks{}
		}
		names = append(names, nh.name)
		for _, stage := range nh.hook.Stages {
			hk := nh.hook.Hook
			switch stage {
			case "prestart":
				out.Prestart = append(out.Prestart, hk) //nolint:staticcheck // the administrator's stage, kept
			case "createRuntime":
				out.CreateRuntime = append(out.CreateRuntime, hk)
			case "createContainer":
				out.CreateContainer = append(out.CreateContainer, hk)
			case "startContainer":
				out.StartContainer = append(out.StartContainer, hk)
			case "poststart":
				out.Poststart = append(out.Poststart, hk)
			case "poststop":
				out.Poststop = append(out.Poststop, hk)
			default:
				return nil, nil, fmt.Errorf("hooks.d file %s: unknown stage %q", nh.name, stage)
			}
		}
	}
	return out, names, nil
}
