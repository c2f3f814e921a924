package nri

import (
	"context"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"
)

// Plugin is the NRI plugin: it handles Configure and CreateContainer only.
type Plugin struct {
	Hooks *HooksDir
	Log   *logrus.Logger
}

var (
	_ stub.ConfigureInterface       = (*Plugin)(nil)
	_ stub.CreateContainerInterface = (*Plugin)(nil)
)

// Configure logs the runtime and subscribes to the events the plugin
// handles (a zero mask: the stub derives them from the methods).
func (p *Plugin) Configure(_ context.Context, _, runtime, version string) (stub.EventMask, error) {
	p.Log.Infof("connected to %s %s", runtime, version)
	return 0, nil
}

// CreateContainer returns Adjust's adjustment: nil, nil, nil when the
// container gets nothing.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	who := fmt.Sprintf("%s/%s/%s", pod.GetNamespace(), pod.GetName(), ctr.GetName())
	d, err := Adjust(pod, ctr, p.Hooks)
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
