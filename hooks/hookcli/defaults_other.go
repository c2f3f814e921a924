//go:build !linux

package hookcli

import "os"

func HostUID() (int, bool) { return os.Geteuid(), os.Geteuid() != 0 }

func UserDefaults(uid int) (string, string, string) { return "", "", "" }
