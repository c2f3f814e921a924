// Command benchplot draws the scaling plot of ocisnap-bench's JSON results:
// time against the number of entries (1k, 10k, 100k files under 1 KiB) and
// against the content size (128 MiB, 512 MiB, 2 GiB in 4 files), restore
// and export, for ocisnap and its peers.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

type stats struct {
	Runs   int
	Median int64 // ns
}

type wresult struct {
	Name, Axis      string
	Entries, Bytes  int64
	Restore, Export map[string]stats
}

type report struct {
	Workloads []wresult
}

var tools = []struct {
	key, name string
	color     color.RGBA
}{
	{"ocisnap", "ocisnap", color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}},
	{"gnutar", "GNU tar", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}},
	{"bsdtar", "bsdtar", color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}},
	{"cstorage", "containers/storage", color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 255}},
}

func main() {
	in := flag.String("in", "results.json", "ocisnap-bench -json output")
	out := flag.String("out", "scaling.png", "PNG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	type panel struct {
		axis, op, xlabel string
	}
	panels := []panel{
		{"entries", "restore", "entries (files < 1 KiB)"},
		{"entries", "export", "entries (files < 1 KiB)"},
		{"bytes", "restore", "content (MiB, 4 files)"},
		{"bytes", "export", "content (MiB, 4 files)"},
	}
	plots := make([][]*plot.Plot, 2)
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s time vs %s", pn.op, pn.axis)
		p.X.Label.Text = pn.xlabel
		p.Y.Label.Text = "median time (s)"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = true, true
		var pts []wresult
		for _, w := range r.Workloads {
			if w.Axis == pn.axis {
				pts = append(pts, w)
			}
		}
		if len(pts) == 0 {
			return fmt.Errorf("%s: no %s scaling points", in, pn.axis)
		}
		sort.Slice(pts, func(a, b int) bool { return x(pts[a], pn.axis) < x(pts[b], pn.axis) })
		for _, t := range tools {
			var xys plotter.XYs
			for _, w := range pts {
				m := w.Restore
				if pn.op == "export" {
					m = w.Export
				}
				if s, ok := m[t.key]; ok && s.Runs > 0 {
					xys = append(xys, plotter.XY{X: x(w, pn.axis), Y: float64(s.Median) / 1e9})
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, s, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			l.Color, s.Color = t.color, t.color
			if t.key == "ocisnap" {
				l.Width = vg.Points(2)
			}
			p.Add(l, s)
			p.Legend.Add(t.name, l, s)
		}
		plots[i/2] = append(plots[i/2], p)
	}
	img := vgimg.New(vg.Points(900), vg.Points(720))
	dc := draw.New(img)
	t := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func x(w wresult, axis string) float64 {
	if axis == "bytes" {
		return float64(w.Bytes) / (1 << 20)
	}
	return float64(w.Entries)
}
