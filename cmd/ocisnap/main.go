// Command ocisnap is the admin CLI of ocisnap: snapshot a running
// container's writable layer, apply, inspect and convert snapshots, check
// which hooks a container's annotations trigger, and clean up after hooks.
// It calls the same engine as ocisnap-hook; see ocisnap(1).
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:]))
}
