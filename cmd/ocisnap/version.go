package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/internal/version"
)

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the Go version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(a.stdout, version.String("ocisnap"))
			return err
		},
	}
}
