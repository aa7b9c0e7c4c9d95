package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"tsdsr/internal/sysmem"
	"tsdsr/server"
	"tsdsr/server/loadtest"
)

func init() {
	register(&command{name: "bench-serve", summary: "load-test the HTTP service on loopback (latency percentiles, throughput, peak RSS)", run: runBenchServe})
}

const benchServeUsage = `Usage: tsdsr bench-serve [flags]

With no --url the server runs in this process, so peak RSS covers server and
clients together.

Flags:
`

// runBenchServe starts the service in this process on a loopback port (or
// targets --url), sends a closed-loop burst of upscale requests and reports
// latency percentiles, throughput, failures and peak RSS. It fails when any
// request fails other than with a documented 429.
func runBenchServe(ctx context.Context, args []string) error {
	fl := newFlagSet("bench-serve", benchServeUsage)
	url := fl.String("url", "", "server to load instead of an in-process one, e.g. http://127.0.0.1:8080")
	requests := fl.Int("requests", 200, "requests in total")
	concurrency := fl.Int("concurrency", 8, "clients sending at once")
	size := fl.Int("size", 64, "side of the generated square PNG inputs")
	query := fl.String("query", "", "options for every request, e.g. scale=2&color_fix=none")
	var f serveFlags
	f.register(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	base := *url
	if base == "" {
		cfg, err := f.config(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return err
		}
		srv, err := server.New(cfg)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		sctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(sctx, ln) }()
		defer func() { stop(); <-done }()
		base = "http://" + ln.Addr().String()
		fmt.Printf("server: in-process at %s, model %s, workers %d, queue %d\n", base, cfg.Upscaler.Name(), f.workers, f.queue)
	}
	fmt.Printf("load: %d requests of %dx%d PNG, concurrency %d\n", *requests, *size, *size, *concurrency)
	rep, err := loadtest.LoadTest(ctx, loadtest.LoadConfig{URL: base, Requests: *requests, Concurrency: *concurrency, Width: *size, Height: *size, Query: *query})
	if err != nil {
		return err
	}
	fmt.Println(rep)
	if rss, err := sysmem.PeakRSS(); err == nil {
		fmt.Printf("peak RSS of this process: %.1f MiB\n", float64(rss)/(1<<20))
	}
	for _, s := range rep.ErrorSamples {
		fmt.Println("error:", s)
	}
	if rep.Errors > 0 {
		return fmt.Errorf("%d requests failed", rep.Errors)
	}
	return nil
}
