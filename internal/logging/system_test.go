package logging

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// listenSyslog is a datagram socket standing in for /dev/log (a real
// socket: journald's is one), returning what it receives.
func listenSyslog(t *testing.T) (string, func() []string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return sock, func() []string {
		var msgs []string
		buf := make([]byte, 64<<10)
		for {
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				return msgs
			}
			msgs = append(msgs, string(buf[:n]))
		}
	}
}

// TestSyslogTarget: with a system log socket, TargetAuto and TargetSyslog
// send each record at info or above as one message in the local syslog
// format, with the daemon facility and the record's severity; stderr keeps
// its own level.
func TestSyslogTarget(t *testing.T) {
	for _, target := range []string{TargetAuto, TargetSyslog} {
		t.Run(target, func(t *testing.T) {
			sock, received := listenSyslog(t)
			var stderr bytes.Buffer
			log, closeLog, err := Open(&stderr, Options{Level: "error", Target: target, SyslogSocket: sock,
				Tag: "ocisnap-hook", DefaultFile: filepath.Join(t.TempDir(), "not-used.log")})
			if err != nil {
				t.Fatal(err)
			}
			log = log.With("container", "c1")
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("export failed", "dest", "/var/lib/ocisnap/x.tar")
			closeLog()
			msgs := received()
			want := []struct{ pri, msg string }{{"<30>", "msg=i"}, {"<28>", "msg=w"}, {"<27>", `msg="export failed"`}}
			if len(msgs) != len(want) {
				t.Fatalf("received %q, want %d messages", msgs, len(want))
			}
			re := regexp.MustCompile(`^<\d+>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ocisnap-hook\[\d+\]: level=\w+ msg=`)
			for i, m := range msgs {
				if !strings.HasPrefix(m, want[i].pri) || !re.MatchString(m) || !strings.Contains(m, want[i].msg+" ") ||
					!strings.Contains(m, "container=c1") || strings.Contains(m, "time=") || strings.HasSuffix(m, "\n") {
					t.Errorf("message %q, want priority %s and %s", m, want[i].pri, want[i].msg)
				}
			}
			if !strings.Contains(msgs[2], "dest=/var/lib/ocisnap/x.tar") {
				t.Errorf("attributes lost: %q", msgs[2])
			}
			if got := strings.Count(stderr.String(), "\n"); got != 1 {
				t.Errorf("stderr at error level got %d lines:\n%s", got, stderr.String())
			}
		})
	}
}

// TestAutoWithoutSyslog: with no system log socket, TargetAuto writes JSON
// records to DefaultFile (created with its directory, root-only);
// TargetSyslog is an error naming the flag; TargetNone writes nowhere.
func TestAutoWithoutSyslog(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ocisnap", "ocisnap-hook.log")
	opts := Options{Target: TargetAuto, SyslogSocket: filepath.Join(dir, "none"), DefaultFile: file}
	// Nothing logged: nothing created (a run that asks nothing touches nothing).
	log, closeLog, err := Open(&bytes.Buffer{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("below the level")
	closeLog()
	if _, err := os.Lstat(filepath.Dir(file)); !os.IsNotExist(err) {
		t.Fatalf("a logger that logged nothing created %s: %v", filepath.Dir(file), err)
	}
	log, closeLog, err = Open(&bytes.Buffer{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	log.With("container", "c1").WithGroup("g").Info("recorded", "k", 1)
	closeLog()
	data, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(data), `"msg":"recorded","container":"c1","g":{"k":1}`) {
		t.Fatalf("default file: %q, %v", data, err)
	}
	for p, perm := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode().Perm(), perm, err)
		}
	}
	if _, _, err := Open(&bytes.Buffer{}, Options{Target: TargetSyslog, SyslogSocket: filepath.Join(dir, "none")}); err == nil || !strings.Contains(err.Error(), "--log syslog") {
		t.Errorf("syslog without a socket: %v", err)
	}
	if _, _, err := Open(&bytes.Buffer{}, Options{Target: "relative.log"}); err == nil || !strings.Contains(err.Error(), "--log") {
		t.Errorf("relative target: %v", err)
	}
	if _, _, err := Open(&bytes.Buffer{}, Options{Target: TargetNone}); err != nil {
		t.Errorf("none: %v", err)
	}
}

// TestOpenRotated: a file at the size limit is renamed to .1 (replacing
// the previous .1) and a new one started; concurrent openers rotate it
// once, so nothing of the old file is lost.
func TestOpenRotated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hook.log")
	old := strings.Repeat("o", 100)
	if err := os.WriteFile(p+".1", []byte("older"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			f, err := OpenRotated(p, 100)
			if err != nil {
				t.Error(err)
				return
			}
			f.WriteString(string(rune('a'+i)) + "\n")
			f.Close()
		})
	}
	wg.Wait()
	if data, _ := os.ReadFile(p + ".1"); string(data) != old {
		t.Errorf("%s.1 holds %q, want the old file whole", p, data)
	}
	if data, _ := os.ReadFile(p); len(data) != 16 {
		t.Errorf("%s holds %q, want the 8 new lines", p, data)
	}
	// Under the limit: appended, not rotated.
	f, err := OpenRotated(p, 100)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("z\n")
	f.Close()
	if data, _ := os.ReadFile(p); len(data) != 18 {
		t.Errorf("%s holds %q after an append", p, data)
	}
}
