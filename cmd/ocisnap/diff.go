package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/pkg/diff"
)

func newDiffCmd(a *app) *cobra.Command {
	var base string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff SNAPSHOT|- [--base DIR]",
		Short: "List the changes in a snapshot, like podman diff",
		Long: "List the paths a snapshot changes, one per line: A (added), C (changed), D (deleted), as\n" +
			"podman diff prints them, followed by O lines for opaque directories (directories that hide\n" +
			"everything the image had in them).\n\n" +
			"Without --base a snapshot cannot tell a change from an addition, so every path that is not\n" +
			"deleted is A. With --base DIR (the image's root file system, or the container's overlay\n" +
			"lower directory) the changes are decided against DIR the way podman diff decides them.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.diff(cmd.Context(), args[0], base, asJSON)
		},
	}
	cmd.Flags().StringVar(&base, "base", "", "directory the snapshot applies to, to tell changed (C) from added (A)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {path, kind, opaque}")
	return cmd
}

func (a *app) diff(ctx context.Context, snapshot, base string, asJSON bool) error {
	in, _, err := a.openInput(snapshot)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer in.Close()
	var root *os.Root
	if base != "" {
		if root, err = os.OpenRoot(base); err != nil {
			return fmt.Errorf("--base: %w", err)
		}
		defer root.Close()
	}
	changes, err := diff.Changes(ctx, in, root)
	if err != nil {
		return fmt.Errorf("read %s: %w", snapshot, err)
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if changes == nil {
			changes = []diff.Change{}
		}
		return enc.Encode(changes)
	}
	w := newLineWriter(a.stdout)
	for _, c := range changes {
		w.printf("%s %s\n", c.Kind, c.Path)
		if c.Opaque {
			w.printf("O %s\n", c.Path)
		}
	}
	return w.flush()
}
