package train

import (
	"bytes"
	"encoding/csv"
	"strconv"
)

// WriteLogCSV writes the rows of a metrics.jsonl file as CSV with the
// given columns, in order (a cell is empty where a row has no such value;
// a row with none of the columns after the first, such as an evaluation's
// when the columns are the training losses, is left out), atomically: a
// spreadsheet-friendly copy of the training log.
func WriteLogCSV(metricsPath, csvPath string, columns []string) error {
	rows, err := ReadLog(metricsPath)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(columns)
	for _, row := range rows {
		rec := make([]string, len(columns))
		has := false
		for i, k := range columns {
			if v, ok := row[k]; ok {
				rec[i] = strconv.FormatFloat(v, 'g', -1, 64)
				has = has || i > 0
			}
		}
		if has {
			w.Write(rec)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return WriteFileAtomic(csvPath, buf.Bytes())
}
