package nri

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// Reconnection delays: the first retry after a lost connection, and the
// longest wait between two attempts while the runtime is down.
const (
	retryFirst = 500 * time.Millisecond
	retryMax   = 5 * time.Second
)

// Serve runs p on the NRI socket until ctx is done, and reconnects when the
// runtime goes away (containerd restarts): the plugin keeps running, so no
// service manager has to restart it, and while it is disconnected the
// runtime creates containers without it — without hooks, so no snapshot is
// overwritten. A plugin that containerd started itself (from
// /opt/nri/plugins, over the pre-connected socket in NRI_PLUGIN_SOCKET)
// cannot reconnect: Serve then returns, and containerd starts it again when
// it comes back. opts are the stub's options (socket path, name, index).
func Serve(ctx context.Context, p *Plugin, opts ...stub.Option) error {
	opts = append(opts, stub.WithOnClose(func() { p.Log.Warn("connection to the runtime closed") }))
	preconnected := os.Getenv(api.PluginSocketEnvVar) != ""
	delay := retryFirst
	for {
		// A fresh stub for every connection: a stub whose registration
		// failed keeps its dead connection.
		s, err := stub.New(p, opts...)
		if err != nil {
			return err
		}
		start := time.Now()
		err = s.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if preconnected {
			if err == nil {
				err = errors.New("connection closed")
			}
			return err
		}
		if time.Since(start) > 10*retryMax {
			delay = retryFirst
		}
		p.Log.Warnf("NRI: %v; reconnecting in %s", err, delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMax)
	}
}
