// Package loadtest is a closed-loop load-test client of the HTTP service's
// POST /v1/upscale (what `tsdsr bench-serve` runs); it is kept apart from
// package server because a server does not need its own load generator.
package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
)

// LoadConfig describes a closed-loop load test of POST /v1/upscale.
type LoadConfig struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:8080".
	URL string
	// Requests in total, sent by Concurrency clients in a closed loop.
	Requests, Concurrency int
	// Width and Height of the generated PNG inputs (defaults 64x64).
	Width, Height int
	// Query is appended to /v1/upscale, e.g. "scale=4&color_fix=none".
	Query string
	// Client is the HTTP client; nil means one with a 5-minute timeout.
	Client *http.Client
}

// LoadReport is the outcome of LoadTest. Latencies are of successful (200)
// requests.
type LoadReport struct {
	Requests, OK, Rejected, Errors int // Rejected: 429 (documented back-pressure)
	P50, P95, P99, Max             time.Duration
	Elapsed                        time.Duration
	Throughput                     float64  // successful requests per second
	ErrorSamples                   []string // up to 5 distinct failures
}

func (r *LoadReport) String() string {
	return fmt.Sprintf("%d requests: %d ok, %d rejected (429), %d errors in %v; %.1f req/s; latency p50 %v p95 %v p99 %v max %v",
		r.Requests, r.OK, r.Rejected, r.Errors, r.Elapsed.Round(time.Millisecond), r.Throughput,
		r.P50.Round(time.Microsecond), r.P95.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
}

// LoadTest sends cfg.Requests upscale requests of generated images (each
// different, so no cache can help) and reports latency percentiles,
// throughput and failures. It stops early when ctx is cancelled.
func LoadTest(ctx context.Context, cfg LoadConfig) (*LoadReport, error) {
	if cfg.Requests <= 0 || cfg.Concurrency <= 0 {
		return nil, fmt.Errorf("server: load test needs requests and concurrency > 0")
	}
	if cfg.Width <= 0 {
		cfg.Width = 64
	}
	if cfg.Height <= 0 {
		cfg.Height = 64
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Minute}
	}
	url := strings.TrimRight(cfg.URL, "/") + "/v1/upscale"
	if cfg.Query != "" {
		url += "?" + cfg.Query
	}
	bodies := make([][]byte, min(cfg.Requests, 16))
	for i := range bodies {
		var buf bytes.Buffer
		if err := imageio.Encode(&buf, NoiseImage(cfg.Width, cfg.Height, uint32(i)), &imageio.EncodeOptions{Format: "png"}); err != nil {
			return nil, err
		}
		bodies[i] = buf.Bytes()
	}

	var (
		mu      sync.Mutex
		rep     = &LoadReport{}
		lats    []time.Duration
		samples = map[string]bool{}
	)
	start := time.Now()
	err := parallel.Jobs(ctx, cfg.Requests, cfg.Concurrency, func(i int) error {
		t0 := time.Now()
		status, msg := send(ctx, client, url, bodies[i%len(bodies)])
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		rep.Requests++
		switch {
		case status == http.StatusOK:
			rep.OK++
			lats = append(lats, d)
		case status == http.StatusTooManyRequests:
			rep.Rejected++
		default:
			rep.Errors++
			if len(samples) < 5 {
				samples[fmt.Sprintf("%d %s", status, msg)] = true
			}
		}
		return nil
	})
	rep.Elapsed = time.Since(start)
	slices.Sort(lats)
	if n := len(lats); n > 0 {
		pct := func(p float64) time.Duration { return lats[min(n-1, int(p*float64(n)))] }
		rep.P50, rep.P95, rep.P99, rep.Max = pct(0.50), pct(0.95), pct(0.99), lats[n-1]
	}
	rep.Throughput = float64(rep.OK) / rep.Elapsed.Seconds()
	for s := range samples {
		rep.ErrorSamples = append(rep.ErrorSamples, s)
	}
	slices.Sort(rep.ErrorSamples)
	return rep, err
}

// send posts one body and returns the status (0 for a transport error) and
// a short reason for failures.
func send(ctx context.Context, client *http.Client, url string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "image/png")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	return resp.StatusCode, ""
}

// NoiseImage is a deterministic RGB test image: a gradient plus hashed
// noise, different for every seed.
func NoiseImage(w, h int, seed uint32) *imageio.Image {
	m := imageio.NewImage(w, h, 3)
	x := seed*2654435761 + 1
	for i := range m.Pix {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p := i % (w * h)
		m.Pix[i] = 0.5*float32(p%w+p/w)/float32(w+h) + 0.5*float32(x&0xff)/255
	}
	return m
}
