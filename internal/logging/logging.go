// Package logging builds the slog logger shared by ocisnap's binaries:
// records at or above a level go to stderr as text (runtimes show a hook's
// stderr in their error message, so it stays terse), and every record at
// info or above can also go to a JSON log file and to the system log
// (journald or syslog through /dev/log) or a rotated file (Open).
package logging

import (
	"io"
	"log/slog"
)

// New returns a logger writing to stderr at level and, if logFile is not
// empty, to logFile as JSON at info level or below level, whichever is lower.
// The returned func closes the log file.
func New(stderr io.Writer, level, logFile string) (*slog.Logger, func(), error) {
	return Open(stderr, Options{Level: level, File: logFile})
}

// dropTime removes the time from stderr records: the runtime adds its own.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
