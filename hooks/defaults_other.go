//go:build !linux

package hooks

import "os"

func hostUID() (int, bool) { return os.Geteuid(), os.Geteuid() != 0 }

func userDefaults(uid int) (string, string, string) { return "", "", "" }
