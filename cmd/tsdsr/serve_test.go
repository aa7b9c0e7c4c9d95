package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"testing"
	"time"

	"tsdsr/models"
)

func TestServeFlagsToConfig(t *testing.T) {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	var f serveFlags
	f.register(fl)
	if err := fl.Parse([]string{"--max-pixels", "1000", "--max-body", "2MiB", "--workers", "3", "--queue", "0", "--timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPixels != 1000 || cfg.MaxBody != 2<<20 || cfg.Workers != 3 || cfg.Queue >= 0 || cfg.Timeout != 5*time.Second || cfg.Upscaler.Name() != models.DefaultName() {
		t.Fatalf("config %+v", cfg)
	}
	for _, bad := range [][]string{{"--max-body", "huge"}, {"--workers", "0"}, {"--model", "nope"}} {
		var g serveFlags
		fl := flag.NewFlagSet("serve", flag.ContinueOnError)
		g.register(fl)
		fl.Parse(bad)
		if _, err := g.config(nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestBenchServeSmall runs the load-test command end to end on a small
// burst: every request must succeed (concurrency fits workers + queue).
func TestBenchServeSmall(t *testing.T) {
	if err := runBenchServe(context.Background(), []string{"--requests", "24", "--concurrency", "4", "--size", "16"}); err != nil {
		t.Fatal(err)
	}
}
