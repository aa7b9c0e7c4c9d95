// Package progress draws the text progress counter of long batch commands
// (tsdsr degrade) on a terminal or into a log.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Counter draws a one-line bar with rate and ETA, redrawn at most every
// 200 ms on a terminal and every 10% otherwise (logs stay short). It is
// safe for concurrent use.
type Counter struct {
	label, unit string
	w           io.Writer
	total       int
	start       int
	tty         bool
	began       time.Time
	mu          sync.Mutex
	done, shed  int
	last        time.Time
}

// New starts a counter of total items on w, done of them already done; label
// starts the line and unit names the items in the rate.
func New(w *os.File, label, unit string, total, done int) *Counter {
	st, err := w.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0
	p := &Counter{label: label, unit: unit, w: w, total: total, start: done, done: done, tty: tty, began: time.Now()}
	p.draw(true)
	return p
}

// Add counts n more items done.
func (p *Counter) Add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.draw(false)
}

// Finish draws the final state and ends the line.
func (p *Counter) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty || p.shed != p.done {
		p.draw(true)
	}
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *Counter) draw(force bool) {
	now := time.Now()
	if p.tty {
		if !force && now.Sub(p.last) < 200*time.Millisecond {
			return
		}
	} else if step := max(1, p.total/10); !force && p.done/step == p.shed/step {
		return
	}
	p.last, p.shed = now, p.done
	el := now.Sub(p.began).Seconds()
	rate := float64(p.done-p.start) / max(el, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	const width = 30
	fill := width * p.done / max(1, p.total)
	line := fmt.Sprintf("%s %*d/%d [%s%s] %.1f %s/s ETA %s", p.label, len(fmt.Sprint(p.total)), p.done, p.total,
		strings.Repeat("#", fill), strings.Repeat("-", width-fill), rate, p.unit, eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}
