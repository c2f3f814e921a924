package hooks

import "github.com/ocisnap/ocisnap/hooks/hookcli"

// The per-user defaults live in hookcli, which the hook's gate shares.
var (
	hostUID      = hookcli.HostUID
	userDefaults = hookcli.UserDefaults
)
