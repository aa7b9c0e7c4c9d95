package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"tsdsr/internal/parallel"
	"tsdsr/models"
	"tsdsr/server"
	"tsdsr/sr"
)

func init() {
	register(&command{name: "serve", summary: "run the HTTP upscaling service and its web page", run: runServe})
}

// serveFlags are the flags shared by serve and bench-serve: the server's
// limits and its model.
type serveFlags struct {
	maxPixels, workers, queue, scale, threads, tile, tileOverlap int
	maxBody, maxMemory, model                                    string
	timeout                                                      time.Duration
}

func (f *serveFlags) register(fl *flag.FlagSet) {
	fl.IntVar(&f.maxPixels, "max-pixels", server.DefaultMaxPixels, "largest input in pixels, checked from the image header before decoding")
	fl.StringVar(&f.maxBody, "max-body", "32MiB", "largest request body, e.g. 32MiB")
	fl.IntVar(&f.workers, "workers", server.DefaultWorkers, "jobs run at once (each uses all --threads)")
	fl.IntVar(&f.queue, "queue", server.DefaultQueue, "jobs that may wait for a worker; beyond that, 429")
	fl.DurationVar(&f.timeout, "timeout", server.DefaultTimeout, "per-request deadline, queueing included")
	fl.StringVar(&f.model, "model", "", "model: a student checkpoint (.safetensors from tsdsr train distill) or a built-in name (tsdsr models); default: the embedded default model")
	fl.IntVar(&f.scale, "scale", 4, "native model scale")
	fl.IntVar(&f.threads, "threads", 0, "worker threads per job (0 = all cores)")
	fl.IntVar(&f.tile, "tile", 64, "model tile size in latent pixels; unused by the bicubic baseline")
	fl.IntVar(&f.tileOverlap, "tile-overlap", 8, "tile overlap in latent pixels; unused by the bicubic baseline")
	fl.StringVar(&f.maxMemory, "max-memory", "", "memory budget per job for automatic tiling; unused by the bicubic baseline")
}

// config turns the flags into a server configuration.
func (f *serveFlags) config(log *slog.Logger) (server.Config, error) {
	var cfg server.Config
	body, err := parseBytes(f.maxBody)
	if err != nil {
		return cfg, fmt.Errorf("--max-body: %w", err)
	}
	var mem int64
	if f.maxMemory != "" {
		if mem, err = parseBytes(f.maxMemory); err != nil {
			return cfg, fmt.Errorf("--max-memory: %w", err)
		}
	}
	if f.maxPixels <= 0 || f.workers <= 0 || f.queue < 0 || f.timeout <= 0 {
		return cfg, errors.New("--max-pixels, --workers and --timeout must be positive, --queue not negative")
	}
	up, err := models.Open(f.model, f.scale)
	if err != nil {
		return cfg, err
	}
	if f.threads > 0 {
		parallel.SetThreads(f.threads)
	}
	queue := f.queue
	if queue == 0 {
		queue = -1 // Config treats 0 as "default"; the flag means none
	}
	return server.Config{
		Upscaler:  up,
		Model:     sr.ModelOptions{Tile: f.tile, TileOverlap: f.tileOverlap, MaxMemory: mem},
		MaxPixels: f.maxPixels, MaxBody: body,
		Workers: f.workers, Queue: queue, Timeout: f.timeout,
		Logger: log,
	}, nil
}

func runServe(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fl.String("addr", "127.0.0.1:8080", "listen address; loopback by default, put a reverse proxy in front for the network")
	logJSON := fl.Bool("log-json", false, "log JSON lines instead of text")
	var f serveFlags
	f.register(fl)
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "Usage: tsdsr serve [flags]\n\nServes POST /v1/upscale, /healthz, /readyz, /v1/models, /metrics and a web page\nat /. SIGTERM or Ctrl-C stops accepting and lets running jobs finish. See docs/api.md.\n\nFlags:")
		fl.PrintDefaults()
	}
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logJSON {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(h)
	cfg, err := f.config(log)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if host, _, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
			log.Warn("listening beyond loopback: anyone who can reach this address can use the service", "addr", ln.Addr().String())
		}
	}
	log.Info("serving", "url", "http://"+ln.Addr().String()+"/", "model", cfg.Upscaler.Name(),
		"workers", f.workers, "queue", f.queue, "max_pixels", f.maxPixels, "max_body", cfg.MaxBody, "timeout", f.timeout)
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}
