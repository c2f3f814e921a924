package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Targets of Options.Target besides an absolute file path.
const (
	TargetAuto   = "auto"   // the system log if there is one, else DefaultFile
	TargetSyslog = "syslog" // the system log (journald or a syslog daemon) through SyslogSocket
	TargetNone   = "none"   // stderr only (and File)
)

// DefaultSyslogSocket is where journald and syslog daemons take local
// records (on systemd hosts a link to journald's socket).
const DefaultSyslogSocket = "/dev/log"

// MaxFileSize is the size past which a log file is rotated: renamed to
// <file>.1 (replacing the previous one) when it is next opened.
const MaxFileSize = 1 << 20

// syslogTimeout bounds a record's send: a stuck log daemon must not hold a
// hook past the runtime's hook timeout.
const syslogTimeout = time.Second

// Options configure Open.
type Options struct {
	// Level is the stderr level ("warn" if empty).
	Level string
	// File, if set, gets every record at info or Level, whichever is lower,
	// as JSON, appended (--log-file).
	File string
	// Target is where the same records go besides: TargetAuto, TargetSyslog,
	// TargetNone (or "") or an absolute file path, rotated (MaxFileSize).
	Target string
	// DefaultFile is TargetAuto's file when there is no system log; ""
	// means none.
	DefaultFile string
	// SyslogSocket is the system log's socket; "" is DefaultSyslogSocket.
	SyslogSocket string
	// Tag names the program in system log records.
	Tag string
}

// Open returns a logger writing text records to stderr at o.Level, and as
// o.File and o.Target say. An explicit target that cannot be opened is an
// error; TargetAuto falls back to stderr alone. The returned func closes
// what was opened.
func Open(stderr io.Writer, o Options) (*slog.Logger, func(), error) {
	if o.Level == "" {
		o.Level = "warn"
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.Level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: %w", o.Level, err)
	}
	sinkLvl := min(lvl, slog.LevelInfo)
	handlers := []slog.Handler{slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl, ReplaceAttr: dropTime})}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if o.File != "" {
		f, err := os.OpenFile(o.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--log-file: %w", err)
		}
		closers = append(closers, func() { _ = f.Close() })
		handlers = append(handlers, slog.NewJSONHandler(f, &slog.HandlerOptions{Level: sinkLvl}))
	}
	h, c, err := openTarget(o, sinkLvl)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if h != nil {
		handlers = append(handlers, h)
		closers = append(closers, c)
	}
	if len(handlers) == 1 {
		return slog.New(handlers[0]), closeAll, nil
	}
	return slog.New(slog.NewMultiHandler(handlers...)), closeAll, nil
}

// openTarget opens o.Target; a nil handler is no target.
func openTarget(o Options, lvl slog.Level) (slog.Handler, func(), error) {
	sock := o.SyslogSocket
	if sock == "" {
		sock = DefaultSyslogSocket
	}
	switch t := o.Target; {
	case t == "" || t == TargetNone:
		return nil, nil, nil
	case t == TargetSyslog:
		h, c, err := openSyslog(sock, o.Tag, lvl)
		if err != nil {
			return nil, nil, fmt.Errorf("--log %s: %w", t, err)
		}
		return h, c, nil
	case t == TargetAuto:
		// Opened at the first record: a hook run that logs nothing (a
		// container that asks nothing of ocisnap) touches nothing.
		l := &lazy{lvl: lvl, open: func() (slog.Handler, func()) {
			if h, c, err := openSyslog(sock, o.Tag, lvl); err == nil {
				return h, c
			}
			if o.DefaultFile == "" {
				return nil, nil
			}
			f, err := OpenRotated(o.DefaultFile, MaxFileSize)
			if err != nil {
				return nil, nil // best effort: the hook must not fail for its log
			}
			return slog.NewJSONHandler(f, &slog.HandlerOptions{Level: lvl}), func() { _ = f.Close() }
		}}
		return l.handler(), func() { l.close() }, nil
	case filepath.IsAbs(t):
		f, err := OpenRotated(t, MaxFileSize)
		if err != nil {
			return nil, nil, fmt.Errorf("--log %s: %w", t, err)
		}
		return slog.NewJSONHandler(f, &slog.HandlerOptions{Level: lvl}), func() { _ = f.Close() }, nil
	default:
		return nil, nil, fmt.Errorf("--log %q: want auto, syslog, none or an absolute file path", t)
	}
}

// OpenRotated opens path for appending (mode 0600, its directory created
// 0700 if missing), first renaming it to path+".1" if it holds maxSize
// bytes or more. Concurrent openers rotate it once: the rename happens
// under an exclusive flock of the file, and an opener whose file was
// renamed meanwhile opens the new one.
func OpenRotated(path string, maxSize int64) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	for range 4 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f); err != nil {
			f.Close()
			return nil, err
		}
		fi, ferr := f.Stat()
		pi, perr := os.Stat(path)
		switch {
		case ferr != nil:
			f.Close()
			return nil, ferr
		case perr != nil || !os.SameFile(fi, pi):
			f.Close() // rotated by another opener: open the new file
			continue
		case fi.Size() < maxSize:
			unlockFile(f)
			return f, nil
		}
		err = os.Rename(path, path+".1")
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("rotate %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("open %s: rotated by others meanwhile, again and again", path)
}

// Severities (RFC 5424) and the facility of ocisnap's records (daemon).
const (
	sevErr, sevWarning, sevInfo, sevDebug = 3, 4, 6, 7
	facilityDaemon                        = 3
)

func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return sevErr
	case l >= slog.LevelWarn:
		return sevWarning
	case l >= slog.LevelInfo:
		return sevInfo
	}
	return sevDebug
}

// openSyslog connects to the system log's socket (a datagram socket, as
// journald's and most daemons' are, else a stream one) and returns a
// handler sending each record as one message in the local syslog format
// ("<PRI>Mmm dd hh:mm:ss TAG[PID]: level=... msg=..."), which journald and
// syslog daemons read; the daemon adds the host and time.
func openSyslog(sock, tag string, lvl slog.Level) (slog.Handler, func(), error) {
	fi, err := os.Stat(sock)
	if err != nil {
		return nil, nil, err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return nil, nil, fmt.Errorf("%s is not a socket", sock)
	}
	w := &syslogWriter{tag: tag, pid: os.Getpid()}
	var errs []error
	for _, network := range []string{"unixgram", "unix"} {
		c, err := net.DialTimeout(network, sock, syslogTimeout)
		if err == nil {
			w.conn, w.stream = c, network == "unix"
			break
		}
		errs = append(errs, err)
	}
	if w.conn == nil {
		return nil, nil, errors.Join(errs...)
	}
	text := slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: dropTime})
	return &syslogHandler{h: text, w: w}, func() { _ = w.conn.Close() }, nil
}

// syslogWriter sends each write (one record of a text handler) as one
// message at the severity its handler set.
type syslogWriter struct {
	mu     sync.Mutex // held by syslogHandler.Handle around the write
	sev    int
	conn   net.Conn
	stream bool
	tag    string
	pid    int
}

func (w *syslogWriter) Write(b []byte) (int, error) {
	msg := strings.TrimRight(string(b), "\n")
	pkt := fmt.Sprintf("<%d>%s %s[%d]: %s", facilityDaemon*8+w.sev, time.Now().Format(time.Stamp), w.tag, w.pid, msg)
	if w.stream {
		pkt += "\n"
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(syslogTimeout))
	if _, err := io.WriteString(w.conn, pkt); err != nil {
		return 0, err
	}
	return len(b), nil
}

// syslogHandler formats records with a text handler into its writer,
// setting the record's severity first.
type syslogHandler struct {
	h slog.Handler
	w *syslogWriter
}

func (s *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.sev = severity(r.Level)
	return s.h.Handle(ctx, r)
}

func (s *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{h: s.h.WithAttrs(as), w: s.w}
}

func (s *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{h: s.h.WithGroup(name), w: s.w}
}

// lazy opens a handler at the first record that reaches it.
type lazy struct {
	lvl   slog.Level
	once  sync.Once
	open  func() (slog.Handler, func())
	h     slog.Handler // nil: none could be opened
	close func()
}

func (l *lazy) get() slog.Handler {
	l.once.Do(func() {
		var c func()
		l.h, c = l.open()
		if c != nil {
			l.close = c
		}
	})
	return l.h
}

func (l *lazy) handler() *lazyHandler {
	l.close = func() {}
	return &lazyHandler{l: l}
}

// lazyHandler is a view (attributes, groups) of a lazy handler.
type lazyHandler struct {
	l   *lazy
	ops []func(slog.Handler) slog.Handler
}

func (h *lazyHandler) Enabled(_ context.Context, lv slog.Level) bool { return lv >= h.l.lvl }

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	inner := h.l.get()
	if inner == nil {
		return nil
	}
	for _, op := range h.ops {
		inner = op(inner)
	}
	return inner.Handle(ctx, r)
}

func (h *lazyHandler) with(op func(slog.Handler) slog.Handler) *lazyHandler {
	return &lazyHandler{l: h.l, ops: append(h.ops[:len(h.ops):len(h.ops)], op)}
}

func (h *lazyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithAttrs(as) })
}

func (h *lazyHandler) WithGroup(name string) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
}
