// Package progress draws a progress bar on a terminal for ocisnap's long
// operations (export, apply, convert): bytes, entries, rate and, when the
// total is known, percentage and ETA. It is built on
// github.com/vbauerster/mpb/v8, as containers/image's pull progress is.
//
// It draws nothing when the output is not a terminal (a pipe, a log file,
// a hook's stderr that a runtime buffers) and nothing for small work: a bar
// appears only once the work is known to exceed Threshold. Every method of
// a nil *Bar does nothing, so callers need no conditionals.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// Threshold is the amount of work (bytes) below which no bar is drawn: a
// few MB take well under a second on any disk, and a bar that flashes by
// is noise.
const Threshold = 8 << 20

// refreshRate is how often the bar is redrawn (mpb's default is 150ms).
const refreshRate = 200 * time.Millisecond

// IsTerminal reports whether f is a terminal (TCGETS succeeds on it) and
// TERM does not say "dumb".
func IsTerminal(f *os.File) bool {
	if f == nil || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Bar reports the progress of one operation.
type Bar struct {
	out   io.Writer
	label string
	total int64 // <= 0: unknown
	width int   // of the whole line
	start time.Time

	bytes, entries atomic.Int64

	mu  sync.Mutex // guards p and bar
	p   *mpb.Progress
	bar *mpb.Bar
	end bool
}

// New returns the Bar of an operation of total bytes (<= 0 when unknown)
// labelled label, drawn on f. It returns nil when f is not a terminal or
// when the known total is below Threshold.
func New(f *os.File, label string, total int64) *Bar {
	if !IsTerminal(f) {
		return nil
	}
	return newBar(writerOnly{f}, label, total, termWidth(f))
}

// termWidth is the terminal's width, 80 when it does not say (a pty whose
// size was never set, as under script(1)), at most maxWidth.
func termWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80
	}
	return min(int(ws.Col), maxWidth)
}

const maxWidth = 120

// writerOnly hides the *os.File from mpb, which would ask the terminal for
// its size on every frame and draw nothing when it reports 0x0; the width
// is given to mpb instead.
type writerOnly struct{ io.Writer }

// newBar returns a Bar drawing on w whatever w is (tests draw into a buffer).
func newBar(w io.Writer, label string, total int64, width int) *Bar {
	if total > 0 && total < Threshold {
		return nil
	}
	b := &Bar{out: w, label: label, total: total, width: width, start: time.Now()}
	if total > 0 {
		b.show()
	}
	return b
}

// SetBytes sets the number of bytes done.
func (b *Bar) SetBytes(n int64) {
	if b == nil {
		return
	}
	b.bytes.Store(n)
	b.update(n)
}

// SetEntries sets the number of entries (files) done.
func (b *Bar) SetEntries(n int64) {
	if b == nil {
		return
	}
	b.entries.Store(n)
}

// Reader returns a reader of r that counts the bytes read as the bytes
// done (for an input whose size is the total).
func (b *Bar) Reader(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	return &countingReader{r: r, b: b}
}

// Writer returns a writer to w that counts the bytes written as the bytes
// done.
func (b *Bar) Writer(w io.Writer) io.Writer {
	if b == nil {
		return w
	}
	return &countingWriter{w: w, b: b}
}

// Done ends the bar: completed when err is nil, aborted (left on screen
// as it is) otherwise. It waits until the last frame is drawn.
func (b *Bar) Done(err error) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.end = true
	p, bar := b.p, b.bar
	b.mu.Unlock()
	if p == nil {
		return
	}
	switch {
	case err != nil:
		bar.Abort(false)
	case b.total > 0:
		bar.SetCurrent(max(b.total, b.bytes.Load()))
	default:
		bar.SetCurrent(b.bytes.Load())
		bar.SetTotal(-1, true)
	}
	p.Wait()
}

// update creates the bar once the work passes Threshold, and moves it.
func (b *Bar) update(n int64) {
	b.mu.Lock()
	bar := b.bar
	if bar == nil && !b.end && n >= Threshold {
		b.showLocked()
		bar = b.bar
	}
	b.mu.Unlock()
	if bar != nil {
		bar.SetCurrent(n)
	}
}

func (b *Bar) show() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.showLocked()
}

func (b *Bar) showLocked() {
	if b.p != nil {
		return
	}
	b.p = mpb.New(mpb.WithOutput(b.out), mpb.WithWidth(b.width), mpb.WithRefreshRate(refreshRate), mpb.WithAutoRefresh())
	entries := decor.Any(func(decor.Statistics) string {
		if n := b.entries.Load(); n > 0 {
			return fmt.Sprintf("%d entries", n)
		}
		return "" // not counted by this operation
	}, decor.WCSyncSpace)
	speed := decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace)
	if b.total > 0 {
		b.bar = b.p.AddBar(b.total,
			mpb.PrependDecorators(
				decor.Name(b.label, decor.WCSyncSpaceR),
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				entries, speed,
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
			),
		)
	} else {
		b.bar = b.p.AddSpinner(0, mpb.BarWidth(1),
			mpb.PrependDecorators(
				decor.Name(b.label, decor.WCSyncSpaceR),
				decor.Current(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(entries, speed, decor.OnComplete(decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpace), "done")),
		)
	}
	// Rates and ETA count from the start of the work, not of the bar.
	b.bar.DecoratorAverageAdjust(b.start)
}

type countingReader struct {
	r io.Reader
	b *Bar
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.b.SetBytes(c.n)
	}
	return n, err
}

type countingWriter struct {
	w io.Writer
	b *Bar
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.n += int64(n)
		c.b.SetBytes(c.n)
	}
	return n, err
}
