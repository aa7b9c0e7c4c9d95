package eval

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteTable prints one row per image and a final row with the means,
// aligned in columns, values to four decimals.
func WriteTable(w io.Writer, names []string, results []Result) error {
	width := len("mean")
	for _, r := range results {
		width = max(width, len(r.Name))
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-*s", width, "image")
	for _, n := range names {
		fmt.Fprintf(bw, "  %10s", n)
	}
	fmt.Fprintln(bw)
	row := func(name string, vals []float64) {
		fmt.Fprintf(bw, "%-*s", width, name)
		for _, v := range vals {
			fmt.Fprintf(bw, "  %10.4f", v)
		}
		fmt.Fprintln(bw)
	}
	for _, r := range results {
		row(r.Name, r.Values)
	}
	fmt.Fprintln(bw, strings.Repeat("-", width+12*len(names)))
	row(fmt.Sprintf("mean (%d)", len(results)), Mean(results, len(names)))
	return bw.Flush()
}

// jsonNumber formats v for JSON rounded to 6 decimals; non-finite values
// (PSNR of identical images in the BasicSR convention) become null.
func jsonNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// WriteJSON prints one JSON object per line per image,
// {"name": ..., "psnr": ..., ...}, and last the summary
// {"n": N, "psnr": mean, ...}, keys being the metric names in order.
// Scripts depend on this shape.
func WriteJSON(w io.Writer, names []string, results []Result) error {
	bw := bufio.NewWriter(w)
	obj := func(first string, vals []float64) {
		bw.WriteString("{" + first)
		for i, n := range names {
			fmt.Fprintf(bw, ", %q: %s", n, jsonNumber(vals[i]))
		}
		bw.WriteString("}\n")
	}
	for _, r := range results {
		name, _ := json.Marshal(r.Name)
		obj(`"name": `+string(name), r.Values)
	}
	obj(fmt.Sprintf(`"n": %d`, len(results)), Mean(results, len(names)))
	return bw.Flush()
}

// WriteCSV prints a header (name and the metric names), one record per
// image and a final record named "mean", values in full precision.
func WriteCSV(w io.Writer, names []string, results []Result) error {
	cw := csv.NewWriter(w)
	cw.Write(append([]string{"name"}, names...))
	rec := func(name string, vals []float64) {
		r := []string{name}
		for _, v := range vals {
			r = append(r, strconv.FormatFloat(v, 'g', -1, 64))
		}
		cw.Write(r)
	}
	for _, r := range results {
		rec(r.Name, r.Values)
	}
	rec("mean", Mean(results, len(names)))
	cw.Flush()
	return cw.Error()
}
