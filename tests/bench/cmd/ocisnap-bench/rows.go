package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// How long each row of a run took, and what a failed run says about itself.

// durableKeys are the export tools of the durable rows.
var durableKeys = []string{"ocisnap-durable", "ocisnap-cli", "gnutar-durable", "bsdtar-durable"}

// durableOnly keeps the durable export tools of keys.
func durableOnly(keys []string) []string {
	return slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return !slices.Contains(durableKeys, k) })
}

// timeRow records how long a row took (from start), in the report and the
// log: the full run's length is the sum of these, and the next person to
// change the defaults needs them (tests/bench/README.md).
func (b *bench) timeRow(rep *report, row string, start time.Time) {
	d := time.Since(start).Round(time.Second)
	rep.Rows = append(rep.Rows, kv{row, d.String()})
	b.logf("row %s took %s", row, d)
}

// failedBanner heads the report of a run that failed.
func (r *report) failedBanner() string {
	if r.Failed == "" {
		return ""
	}
	return fmt.Sprintf("> **INCOMPLETE RUN — a row failed, the rows after it were not measured:** %s\n\n", r.Failed)
}

// runSummary is the report's line on the rows' durations.
func (r *report) runSummary() string {
	var b strings.Builder
	if len(r.Rows) > 0 {
		var parts []string
		for _, row := range r.Rows {
			parts = append(parts, row.K+" "+row.V)
		}
		fmt.Fprintf(&b, "Rows took (wall clock, preparation included): %s; the whole run %s.\n\n", strings.Join(parts, ", "), r.Elapsed)
	}
	return b.String()
}
