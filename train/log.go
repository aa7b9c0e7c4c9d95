package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Scalars are named scalars of one step or evaluation ("loss", "lr",
// "val_0.5", ...).
type Scalars map[string]float64

const metricsFile = "metrics.jsonl"

// openLog opens metrics.jsonl for appending after keeping only the
// lines of steps up to keep.
func (r *Run) openLog(keep int) error {
	path := filepath.Join(r.Dir, metricsFile)
	rows, err := ReadLog(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var buf bytes.Buffer
	for _, row := range rows {
		if int(row["step"]) <= keep {
			b, _ := json.Marshal(row)
			buf.Write(append(b, '\n'))
		}
	}
	if err := WriteFileAtomic(path, buf.Bytes()); err != nil {
		return err
	}
	r.metrics, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	return err
}

// Record appends one line {"step": step, "time_s": wall time, m...} to
// metrics.jsonl; step counts optimiser steps done. Values that are not
// finite are written as null (JSON has no NaN).
func (r *Run) Record(step int, m Scalars) error {
	row := map[string]any{"step": step, "time_s": math.Round(r.Elapsed().Seconds()*1000) / 1000}
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			row[k] = nil
		} else {
			row[k] = v
		}
	}
	b, err := json.Marshal(row)
	if err != nil {
		return err
	}
	_, err = r.metrics.Write(append(b, '\n'))
	return err
}

// ReadLog parses a metrics.jsonl file (null values are skipped).
func ReadLog(path string) ([]Scalars, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []Scalars
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var raw map[string]*float64
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			return nil, fmt.Errorf("train: %s:%d: %w", path, line, err)
		}
		m := Scalars{}
		for k, v := range raw {
			if v != nil {
				m[k] = *v
			}
		}
		rows = append(rows, m)
	}
	return rows, sc.Err()
}

// plotPoints is about how many points a plotted series keeps: longer series
// are averaged in bins, which also smooths the noisy per-step loss.
const plotPoints = 300

// PlotLog draws the series of metrics.jsonl whose names start with one
// of prefixes against the step into a PNG (atomically), on a log scale when
// the values span more than a decade.
func PlotLog(metricsPath, pngPath string, prefixes ...string) error {
	rows, err := ReadLog(metricsPath)
	if err != nil {
		return err
	}
	series := map[string]plotter.XYs{}
	lo, hi := math.Inf(1), 0.0
	for _, row := range rows {
		for k, v := range row {
			if k == "step" || v <= 0 || !hasPrefix(k, prefixes) {
				continue
			}
			series[k] = append(series[k], plotter.XY{X: row["step"], Y: v})
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if len(series) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "training metrics"
	p.X.Label.Text = "step"
	p.Y.Label.Text = "value"
	if hi > 10*lo {
		// Losses falling over decades read best on a log scale; over a
		// narrower range log ticks would leave the axis unlabelled.
		p.Y.Label.Text = "value (log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	names := make([]string, 0, len(series))
	for k := range series {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		l, err := plotter.NewLine(binned(series[k]))
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(k, l)
	}
	w, err := p.WriterTo(9*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return err
	}
	return WriteFileAtomic(pngPath, buf.Bytes())
}

// binned averages consecutive points (in step order) so at most about
// plotPoints remain.
func binned(xy plotter.XYs) plotter.XYs {
	sort.SliceStable(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
	n := (len(xy) + plotPoints - 1) / plotPoints
	if n <= 1 {
		return xy
	}
	var out plotter.XYs
	for lo := 0; lo < len(xy); lo += n {
		hi := min(len(xy), lo+n)
		var sx, sy float64
		for _, p := range xy[lo:hi] {
			sx += p.X
			sy += p.Y
		}
		out = append(out, plotter.XY{X: sx / float64(hi-lo), Y: sy / float64(hi-lo)})
	}
	return out
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
