package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"tsdsr/catalog"
	"tsdsr/server"
)

func TestServeFlagsToConfig(t *testing.T) {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	var f serveFlags
	f.register(fl)
	if err := fl.Parse([]string{"--max-pixels", "1000", "--max-body", "2MiB", "--workers", "3", "--queue", "0", "--timeout", "5s", "--allowed-hosts", "proxy.example, b.example"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.AllowedHosts) != 2 || cfg.AllowedHosts[0] != "proxy.example" || cfg.MinUploadRate != 32<<10 || cfg.MaxJobMemory != 2<<30 || cfg.MaxOutputPixels != server.DefaultMaxOutputPixels {
		t.Fatalf("config %+v", cfg)
	}
	if cfg.MaxPixels != 1000 || cfg.MaxBody != 2<<20 || cfg.Workers != 3 || cfg.Queue >= 0 || cfg.Timeout != 5*time.Second || cfg.Upscaler.Name() != catalog.DefaultName() {
		t.Fatalf("config %+v", cfg)
	}
	for _, bad := range [][]string{{"--max-body", "huge"}, {"--max-body", "0"}, {"--workers", "0"}, {"--model", "nope"},
		{"--tile", "1"}, {"--tile", "-1"}, {"--tile", "16", "--tile-overlap", "16"}, {"--tile-overlap", "-1"}, {"--shifts", "3"},
		{"--min-upload-rate", "0"}, {"--max-output-pixels", "0"}, {"--max-job-memory", "0"}, {"--max-uploads", "0"}} {
		var g serveFlags
		fl := flag.NewFlagSet("serve", flag.ContinueOnError)
		g.register(fl)
		fl.Parse(bad)
		if _, err := g.config(nil); err == nil {
			t.Errorf("%v accepted", bad)
		} else if strings.HasPrefix(bad[0], "--tile") && !strings.Contains(err.Error(), "tile") {
			t.Errorf("%v: error %q does not name the tile", bad, err)
		}
	}
}

// TestServeRefusesBadTileAtStartup: --tile 1 used to start a server that
// answered 500 to every upscale; now the command fails before listening.
func TestServeRefusesBadTileAtStartup(t *testing.T) {
	err := runServe(context.Background(), []string{"--tile", "1", "--addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "--tile 1") {
		t.Fatalf("got %v", err)
	}
}

// TestBenchServeSmall runs the load-test command end to end on a small
// burst: every request must succeed (concurrency fits workers + queue).
func TestBenchServeSmall(t *testing.T) {
	if err := runBenchServe(context.Background(), []string{"--requests", "24", "--concurrency", "4", "--size", "16"}); err != nil {
		t.Fatal(err)
	}
}
