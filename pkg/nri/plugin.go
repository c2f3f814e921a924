package nri

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"
)

// Plugin is the NRI plugin: it handles Configure and CreateContainer only.
type Plugin struct {
	// Hooks are the hooks.d files; Configure may replace them (under mu).
	Hooks *HooksDir
	Log   *logrus.Logger

	mu sync.Mutex
}

func (p *Plugin) hooksDir() *HooksDir {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Hooks
}

var (
	_ stub.ConfigureInterface       = (*Plugin)(nil)
	_ stub.CreateContainerInterface = (*Plugin)(nil)
)

// Config is the plugin's configuration file, which the runtime passes to a
// plugin it starts itself (containerd and CRI-O read
// <plugin_config_path>/10-ocisnap.conf or ocisnap.conf): JSON such as
// {"hooksDirs": ["/etc/ocisnap/hooks.d"]}. A plugin started from
// /opt/nri/plugins gets no command line, so this is where its hooks.d
// directories are set. Unknown fields are an error.
type Config struct {
	// HooksDirs replaces the --hooks-dir directories when not empty.
	HooksDirs []string `json:"hooksDirs,omitempty"`
}

// Configure applies the runtime's configuration for the plugin (see
// Config; none for a plugin started by hand), logs the runtime, and
// subscribes to the events the plugin handles (a zero mask: the stub
// derives them from the methods). A configuration it cannot use fails the
// registration, so the mistake shows in the runtime's log.
func (p *Plugin) Configure(_ context.Context, config, runtime, version string) (stub.EventMask, error) {
	p.Log.Infof("connected to %s %s", runtime, version)
	if strings.TrimSpace(config) == "" {
		return 0, nil
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return 0, fmt.Errorf("ocisnap-nri configuration: %w", err)
	}
	for _, d := range c.HooksDirs {
		if !filepath.IsAbs(d) {
			return 0, fmt.Errorf("ocisnap-nri configuration: hooksDirs: %q is not an absolute path", d)
		}
	}
	if len(c.HooksDirs) > 0 {
		p.mu.Lock()
		p.Hooks = NewHooksDir(c.HooksDirs, p.Log)
		p.mu.Unlock()
		p.Log.Infof("hooks.d directories from the runtime's configuration: %v", c.HooksDirs)
	}
	return 0, nil
}

// CreateContainer returns Adjust's adjustment: nil, nil, nil when the
// container gets nothing.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	who := fmt.Sprintf("%s/%s/%s", pod.GetNamespace(), pod.GetName(), ctr.GetName())
	d, err := Adjust(pod, ctr, p.hooksDir())
	if err != nil {
		p.Log.Errorf("%s: %v", who, err)
		return nil, nil, err
	}
	if len(d.Dropped) > 0 {
		p.Log.Warnf("%s: removed user-supplied %v (only the plugin sets them)", who, d.Dropped)
	}
	if len(d.Files) == 0 {
		p.Log.Debugf("%s: nothing added: %s", who, d.Why)
		return d.Adjustment, nil, nil
	}
	p.Log.Infof("%s: added the hooks of %v, copied %v", who, d.Files, d.Copied)
	return d.Adjustment, nil, nil
}
