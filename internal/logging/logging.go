// Package logging builds the slog logger shared by ocisnap's binaries:
// records at or above a level go to stderr as text (runtimes show a hook's
// stderr in their error message, so it stays terse), and every record at
// info or above can also be appended to a JSON log file.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// New returns a logger writing to stderr at level and, if logFile is not
// empty, to logFile as JSON at info level or below level, whichever is lower.
// The returned func closes the log file.
func New(stderr io.Writer, level, logFile string) (*slog.Logger, func(), error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	text := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl, ReplaceAttr: dropTime})
	if logFile == "" {
		return slog.New(text), func() {}, nil
	}
	f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--log-file: %w", err)
	}
	fileLvl := min(lvl, slog.LevelInfo)
	js := slog.NewJSONHandler(f, &slog.HandlerOptions{Level: fileLvl})
	return slog.New(slog.NewMultiHandler(text, js)), func() { _ = f.Close() }, nil
}

// dropTime removes the time from stderr records: the runtime adds its own.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
