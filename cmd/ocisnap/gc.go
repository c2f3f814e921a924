package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/hooks"
)

func newGCCmd(a *app) *cobra.Command {
	cfg := hooks.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Release what hooks left behind for containers that are gone",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("not available in this build (hooks.GC is not implemented yet)")
		},
	}
	hooks.RegisterFlags(cmd.Flags(), &cfg)
	return cmd
}
