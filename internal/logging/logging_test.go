package logging

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewStderrAndFile: stderr gets text records at the level, without a
// time; the log file gets JSON records at info or the level, whichever is
// lower, with a time; attributes and groups reach both.
func TestNewStderrAndFile(t *testing.T) {
	for _, tc := range []struct {
		level            string
		stderr, fileMsgs []string
	}{
		{"warn", []string{"w", "e"}, []string{"i", "w", "e"}},
		{"error", []string{"e"}, []string{"i", "w", "e"}},
		{"debug", []string{"d", "i", "w", "e"}, []string{"d", "i", "w", "e"}},
	} {
		t.Run(tc.level, func(t *testing.T) {
			var stderr bytes.Buffer
			file := filepath.Join(t.TempDir(), "log.json")
			log, closeLog, err := New(&stderr, tc.level, file)
			if err != nil {
				t.Fatal(err)
			}
			log = log.With("container", "c1").WithGroup("g")
			log.Debug("d", "k", 1)
			log.Info("i", "k", 1)
			log.Warn("w", "k", 1)
			log.Error("e", "k", 1)
			closeLog()

			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != len(tc.stderr) {
				t.Fatalf("stderr:\n%s\nwant messages %v", stderr.String(), tc.stderr)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, "level=") || strings.Contains(l, "time=") ||
					!strings.Contains(l, "msg="+tc.stderr[i]+" ") || !strings.HasSuffix(l, "container=c1 g.k=1") {
					t.Errorf("stderr line %q, want level, msg=%s, container=c1 g.k=1 and no time", l, tc.stderr[i])
				}
			}

			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var rec struct {
					Time      string
					Msg       string
					Container string
					G         struct{ K int }
				}
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("log file line %q: %v", l, err)
				}
				if rec.Time == "" || rec.Container != "c1" || rec.G.K != 1 {
					t.Errorf("log file line %q: want time, container and g.k", l)
				}
				got = append(got, rec.Msg)
			}
			if strings.Join(got, ",") != strings.Join(tc.fileMsgs, ",") {
				t.Errorf("log file messages %v, want %v", got, tc.fileMsgs)
			}
		})
	}
}

func TestNewWithoutFile(t *testing.T) {
	var stderr bytes.Buffer
	log, closeLog, err := New(&stderr, "info", "")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("d")
	log.Info("i")
	closeLog()
	if got := strings.TrimSpace(stderr.String()); got != "level=INFO msg=i" {
		t.Fatalf("stderr %q, want the info record only, without a time", got)
	}
}

func TestNewBadArguments(t *testing.T) {
	if _, _, err := New(&bytes.Buffer{}, "loud", ""); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("level loud: %v, want a --log-level error", err)
	}
	if _, _, err := New(&bytes.Buffer{}, "info", filepath.Join(t.TempDir(), "no/such/dir/log")); err == nil ||
		!strings.Contains(err.Error(), "--log-file") {
		t.Errorf("log file in a missing directory: %v, want a --log-file error", err)
	}
}
