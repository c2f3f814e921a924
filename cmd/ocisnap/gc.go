package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/hooks"
)

func newGCCmd(a *app) *cobra.Command {
	cfg := hooks.DefaultConfig()
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Release what hooks left behind for containers that are gone",
		Long: "For every container recorded in the hook's state directory whose process is gone (its\n" +
			"poststop hook never ran: the runtime crashed, the hook was killed), release its boot views\n" +
			"(unmount, detach the loop device, remove mountpoint stubs) and forget it; containers still\n" +
			"running are left alone. Also remove the temporary files of interrupted exports from the\n" +
			"allowed directories. It does not export: that needs the container's poststop.\n" +
			"Give it the same flags as the hook in its hooks.d file (--allow-dir, --state-dir).",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.gc(cmd.Context(), cfg, asJSON)
		},
	}
	hooks.RegisterFlags(cmd.Flags(), &cfg)
	// Accepted, so that the hook's arguments can be passed unchanged, but
	// of no use to gc: not listed.
	for _, name := range []string{"max-bytes", "max-entries", "allow-devices", "gvisor-compat", "strict-export", "status-dir"} {
		_ = cmd.Flags().MarkHidden(name)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func (a *app) gc(ctx context.Context, cfg hooks.Config, asJSON bool) error {
	if err := cfg.Policy.Validate(); err != nil {
		return usageError{err}
	}
	cfg.Logger = a.log
	rep, err := hooks.GC(ctx, cfg)
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); jerr != nil && err == nil {
			err = jerr
		}
	} else {
		w := newLineWriter(a.stdout)
		for _, id := range rep.Removed {
			w.printf("released %s\n", id)
		}
		for _, id := range rep.Live {
			w.printf("running  %s (kept)\n", id)
		}
		for _, p := range rep.Temps {
			w.printf("removed  %s\n", p)
		}
		if ferr := w.flush(); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}
