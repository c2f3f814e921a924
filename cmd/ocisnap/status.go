package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/hooks"
)

func newStatusCmd(a *app) *cobra.Command {
	cfg := hooks.DefaultConfig()
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show recent hook failures, the containers with live views, and pending pushes",
		Long: "Show what the hook did that nobody saw: the recent failures it recorded (an export at a\n" +
			"container's stop that failed: Podman throws a poststop hook's error away), newest first;\n" +
			"the containers it keeps state for (their live views, the exports still to be written at\n" +
			"their stop); and the exports kept for later delivery. Give it the hook's --state-dir and\n" +
			"--status-dir if its hooks.d file sets them.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.status(cmd.Context(), cfg, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "the hook's directory of per-container state files")
	f.StringVar(&cfg.StatusDir, "status-dir", cfg.StatusDir, "the hook's directory of failure records")
	f.StringVar(&cfg.Registry.SpoolDir, "spool-dir", cfg.Registry.SpoolDir, "the hook's spool of undelivered registry exports")
	f.BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func (a *app) status(ctx context.Context, cfg hooks.Config, asJSON bool) error {
	st, err := hooks.CollectStatus(ctx, cfg)
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(st); jerr != nil && err == nil {
			err = jerr
		}
	} else if perr := printStatus(a, st); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

func printStatus(a *app, st *hooks.Status) error {
	w := newLineWriter(a.stdout)
	w.printf("Recent failures (%s):", st.StatusDir)
	if len(st.Failures) == 0 {
		w.printf(" none\n")
	} else {
		w.printf("\n")
	}
	for _, f := range st.Failures {
		who := f.Container
		if f.Name != "" {
			who += " (" + f.Name + ")"
		}
		w.printf("  %s  %s failed  container %s\n", f.Time.Local().Format(time.RFC3339), f.Kind, who)
		if f.Dest != "" {
			w.printf("    %s=%s\n", f.Annotation, f.Dest)
		}
		w.printf("    cause: %s\n", f.Cause)
	}

	w.printf("\nContainers with hook state (%s):", st.StateDir)
	if len(st.Containers) == 0 {
		w.printf(" none\n")
	} else {
		w.printf("\n")
	}
	for _, c := range st.Containers {
		who := c.ID
		if c.Name != "" {
			who += " (" + c.Name + ")"
		}
		state := "running"
		if !c.Alive {
			state = "gone (ocisnap gc reclaims it)"
		}
		w.printf("  %s  pid %d, %s, since %s\n", who, c.Pid, state, c.Created.Local().Format(time.RFC3339))
		if c.Export != "" {
			w.printf("    export at stop to %s\n", c.Export)
		}
		for _, v := range c.Views {
			src := v.Kind
			if v.Source != "" {
				src += ":" + v.Source
			}
			mounted := "mounted"
			if !v.Mounted {
				mounted = "not mounted"
			}
			w.printf("    view %s, %s at %s", src, mounted, v.Mountpoint)
			if v.LoopDevice != "" {
				w.printf(" (%s)", v.LoopDevice)
			}
			if len(v.Binds) > 0 {
				w.printf(", binds %s", strings.Join(v.Binds, " "))
			}
			w.printf("\n")
		}
	}

	w.printf("\nPending pushes:")
	if len(st.Pending) == 0 {
		w.printf(" none\n")
	} else {
		w.printf("\n")
	}
	for _, p := range st.Pending {
		w.printf("  %s  %s", p.Since.Local().Format(time.RFC3339), p.Dest)
		if p.Container != "" {
			w.printf("  container %s", p.Container)
		}
		w.printf("\n")
		if p.Cause != "" {
			w.printf("    cause: %s\n", p.Cause)
		}
	}
	return w.flush()
}
