package layer

// Progress (WithProgress) is reported at most every progressEntries entries
// or progressBytes of content, by Apply and Write alike, and once at the end.
const (
	progressEntries = 64
	progressBytes   = 4 << 20
)

// progress reports the totals to fn when enough has been done since the
// last report.
type progress struct {
	fn   func(Stats)
	last Stats
}

func (p *progress) update(s Stats) {
	if p.fn == nil {
		return
	}
	if s.Entries-p.last.Entries >= progressEntries || s.Bytes-p.last.Bytes >= progressBytes {
		p.last = s
		p.fn(s)
	}
}

// done reports the final totals, unless they were the last reported.
func (p *progress) done(s Stats) {
	if p.fn != nil && s != p.last {
		p.last = s
		p.fn(s)
	}
}
