package server

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tsdsr/sr"
)

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram: from a tiny bicubic job to a large image on the model.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// counters are what GET /metrics reports, written in the Prometheus
// text exposition format (version 0.0.4) by hand: a dozen lines do not
// justify the client library.
type counters struct {
	model, scale string

	uploading       atomic.Int64
	queued, running atomic.Int64
	rejected        atomic.Int64
	inPixels        atomic.Int64
	outPixels       atomic.Int64

	mu        sync.Mutex
	requests  map[[2]string]uint64 // {path, status} -> count
	cancelled map[string]uint64    // reason -> count
	hist      map[string]*histogram
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

func newCounters(up sr.Upscaler) *counters {
	return &counters{
		model: up.Name(), scale: strconv.Itoa(up.Scale()),
		requests:  map[[2]string]uint64{},
		cancelled: map[string]uint64{"client_gone": 0, "timeout": 0},
		hist:      map[string]*histogram{},
	}
}

func (m *counters) request(path string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[2]string{path, strconv.Itoa(status)}]++
	h := m.hist[path]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
		m.hist[path] = h
	}
	sec := d.Seconds()
	i := sort.SearchFloat64s(latencyBuckets, sec) // first bound >= sec
	h.counts[i]++
	h.sum += sec
	h.n++
}

func (m *counters) cancel(reason string) {
	m.mu.Lock()
	m.cancelled[reason]++
	m.mu.Unlock()
}

func (m *counters) pixels(in, out int) {
	m.inPixels.Add(int64(in))
	m.outPixels.Add(int64(out))
}

// serve writes all metrics; families and label sets are sorted so the
// output is stable.
func (m *counters) serve(s *Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		b := bufio.NewWriter(w)
		defer b.Flush()
		family := func(name, typ, help string) {
			fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		}
		m.mu.Lock()
		defer m.mu.Unlock()

		family("tsdsr_http_requests_total", "counter", "HTTP requests by route and status (499: client went away).")
		keys := make([][2]string, 0, len(m.requests))
		for k := range m.requests {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
		})
		for _, k := range keys {
			fmt.Fprintf(b, "tsdsr_http_requests_total{path=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
		}

		family("tsdsr_http_request_duration_seconds", "histogram", "Request latency by route, queueing included.")
		paths := make([]string, 0, len(m.hist))
		for p := range m.hist {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			h := m.hist[p]
			var cum uint64
			for i, le := range latencyBuckets {
				cum += h.counts[i]
				fmt.Fprintf(b, "tsdsr_http_request_duration_seconds_bucket{path=%q,le=%q} %d\n", p, strconv.FormatFloat(le, 'g', -1, 64), cum)
			}
			fmt.Fprintf(b, "tsdsr_http_request_duration_seconds_bucket{path=%q,le=\"+Inf\"} %d\n", p, h.n)
			fmt.Fprintf(b, "tsdsr_http_request_duration_seconds_sum{path=%q} %g\n", p, h.sum)
			fmt.Fprintf(b, "tsdsr_http_request_duration_seconds_count{path=%q} %d\n", p, h.n)
		}

		family("tsdsr_jobs_cancelled_total", "counter", "Upscale jobs stopped before finishing, by reason.")
		for _, reason := range []string{"client_gone", "timeout"} {
			fmt.Fprintf(b, "tsdsr_jobs_cancelled_total{reason=%q} %d\n", reason, m.cancelled[reason])
		}
		family("tsdsr_jobs_rejected_total", "counter", "Upscale requests refused with 429 because the queue or the upload slots were full.")
		fmt.Fprintf(b, "tsdsr_jobs_rejected_total %d\n", m.rejected.Load())
		family("tsdsr_uploads_in_progress", "gauge", "Upload bodies being read; they hold no queue slot.")
		fmt.Fprintf(b, "tsdsr_uploads_in_progress %d\n", m.uploading.Load())
		family("tsdsr_queue_depth", "gauge", "Decoded jobs waiting for a worker.")
		fmt.Fprintf(b, "tsdsr_queue_depth %d\n", m.queued.Load())
		family("tsdsr_jobs_running", "gauge", "Jobs being upscaled now.")
		fmt.Fprintf(b, "tsdsr_jobs_running %d\n", m.running.Load())
		family("tsdsr_workers", "gauge", "Configured number of workers.")
		fmt.Fprintf(b, "tsdsr_workers %d\n", s.cfg.Workers)
		family("tsdsr_input_pixels_total", "counter", "Input pixels of successful jobs.")
		fmt.Fprintf(b, "tsdsr_input_pixels_total %d\n", m.inPixels.Load())
		family("tsdsr_output_pixels_total", "counter", "Output pixels of successful jobs.")
		fmt.Fprintf(b, "tsdsr_output_pixels_total %d\n", m.outPixels.Load())
		family("tsdsr_model_info", "gauge", "The model served (always 1).")
		fmt.Fprintf(b, "tsdsr_model_info{model=%q,scale=%q} 1\n", m.model, m.scale)
		family("tsdsr_ready", "gauge", "1 when /readyz succeeds.")
		ready := 0
		if s.ready.Load() {
			ready = 1
		}
		fmt.Fprintf(b, "tsdsr_ready %d\n", ready)
	}
}
