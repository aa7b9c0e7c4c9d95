package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"tsdsr/catalog"
	"tsdsr/internal/parallel"
	"tsdsr/internal/sysmem"
	"tsdsr/server"
	"tsdsr/sr"
)

func init() {
	register(&command{name: "serve", summary: "run the HTTP upscaling service and its web page", run: runServe})
}

// serveFlags are the flags shared by serve and bench-serve: the server's
// limits and its model.
type serveFlags struct {
	maxPixels, maxOutputPixels, maxUploads, workers, queue, scale, threads, tile, tileOverlap, shifts int
	maxBody, maxJobMemory, minUploadRate, model, allowedHosts                                         string
	timeout, uploadGrace                                                                              time.Duration
}

func (f *serveFlags) register(fl *flag.FlagSet) {
	fl.IntVar(&f.maxPixels, "max-pixels", server.DefaultMaxPixels, "largest input in pixels, checked from the image header before decoding")
	fl.IntVar(&f.maxOutputPixels, "max-output-pixels", server.DefaultMaxOutputPixels, "largest output in pixels, checked before the job queues")
	fl.StringVar(&f.maxJobMemory, "max-job-memory", "2GiB", "largest estimated memory of one job's image buffers")
	fl.StringVar(&f.maxBody, "max-body", "32MiB", "largest request body, e.g. 32MiB (must be positive)")
	fl.DurationVar(&f.uploadGrace, "upload-grace", server.DefaultUploadGrace, "time an upload may take before --min-upload-rate applies")
	fl.StringVar(&f.minUploadRate, "min-upload-rate", "32KiB", "slowest average upload rate per second after --upload-grace; slower uploads get 408")
	fl.IntVar(&f.maxUploads, "max-uploads", server.DefaultMaxUploads, "request bodies read at once (each up to --max-body); beyond that, 429")
	fl.StringVar(&f.allowedHosts, "allowed-hosts", "", "comma-separated Host names accepted besides IP addresses, localhost and the --addr host (a reverse proxy's name); '*' accepts any")
	fl.IntVar(&f.workers, "workers", server.DefaultWorkers, "jobs run at once (each uses all --threads)")
	fl.IntVar(&f.queue, "queue", server.DefaultQueue, "jobs that may wait for a worker; beyond that, 429")
	fl.DurationVar(&f.timeout, "timeout", server.DefaultTimeout, "per-request deadline from the end of the upload: queueing, the model and encoding")
	fl.StringVar(&f.model, "model", "", "model: a student checkpoint (.safetensors from tsdsr train distill) or a built-in name (tsdsr models); default: the embedded default model")
	fl.IntVar(&f.scale, "scale", 4, "native model scale")
	fl.IntVar(&f.threads, "threads", 0, "worker threads per job (0 = all cores)")
	fl.IntVar(&f.tile, "tile", 64, "model tile size in latent pixels; unused by the bicubic baseline")
	fl.IntVar(&f.tileOverlap, "tile-overlap", 8, "tile overlap in latent pixels; unused by the bicubic baseline")
	fl.IntVar(&f.shifts, "shifts", 0, shiftsUsage)
}

// config turns the flags into a server configuration.
func (f *serveFlags) config(log *slog.Logger) (server.Config, error) {
	var cfg server.Config
	var sizes [3]int64
	for i, v := range []struct{ name, val string }{{"max-body", f.maxBody}, {"max-job-memory", f.maxJobMemory}, {"min-upload-rate", f.minUploadRate}} {
		n, err := sysmem.ParseBytes(v.val)
		if err != nil {
			return cfg, fmt.Errorf("--%s: %w", v.name, err)
		}
		if n <= 0 {
			return cfg, fmt.Errorf("--%s %s: must be positive", v.name, v.val)
		}
		sizes[i] = n
	}
	if f.maxPixels <= 0 || f.maxOutputPixels <= 0 || f.maxUploads <= 0 || f.workers <= 0 || f.queue < 0 || f.timeout <= 0 || f.uploadGrace <= 0 {
		return cfg, errors.New("--max-pixels, --max-output-pixels, --max-uploads, --workers, --timeout and --upload-grace must be positive, --queue not negative")
	}
	if err := sr.ValidateTiling(f.tile, f.tileOverlap); err != nil {
		return cfg, fmt.Errorf("--tile %d --tile-overlap %d: %w", f.tile, f.tileOverlap, err)
	}
	if err := sr.ValidateShifts(f.shifts); err != nil {
		return cfg, fmt.Errorf("--shifts: %w", err)
	}
	var hosts []string
	for _, h := range strings.Split(f.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	up, err := catalog.Open(f.model, f.scale)
	if err != nil {
		return cfg, err
	}
	if err := sr.CheckTiling(up, f.tile, f.tileOverlap); err != nil {
		return cfg, fmt.Errorf("--tile %d --tile-overlap %d: %w", f.tile, f.tileOverlap, err)
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
		Model:     sr.ModelOptions{Tile: f.tile, TileOverlap: f.tileOverlap, Shifts: f.shifts},
		MaxPixels: f.maxPixels, MaxOutputPixels: f.maxOutputPixels, MaxJobMemory: sizes[1],
		MaxBody: sizes[0], UploadGrace: f.uploadGrace, MinUploadRate: sizes[2], MaxUploads: f.maxUploads,
		Workers: f.workers, Queue: queue, Timeout: f.timeout,
		AllowedHosts: hosts, Logger: log,
	}, nil
}

const serveUsage = `Usage: tsdsr serve [flags]

Serves POST /v1/upscale, /healthz, /readyz, /v1/models, /metrics and a web page
at /. SIGTERM or Ctrl-C stops accepting and lets running jobs finish. See docs/api.md.

Flags:
`

func runServe(ctx context.Context, args []string) error {
	fl := newFlagSet("serve", serveUsage)
	addr := fl.String("addr", "127.0.0.1:8080", "listen address; loopback by default, put a reverse proxy in front for the network")
	logJSON := fl.Bool("log-json", false, "log JSON lines instead of text")
	var f serveFlags
	f.register(fl)
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
	// A name given to --addr is this server's own: browsers send it as Host.
	if host, _, err := net.SplitHostPort(*addr); err == nil && host != "" && net.ParseIP(host) == nil {
		cfg.AllowedHosts = append(cfg.AllowedHosts, host)
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
		"workers", f.workers, "queue", f.queue, "max_pixels", f.maxPixels, "max_output_pixels", f.maxOutputPixels,
		"max_body", cfg.MaxBody, "timeout", f.timeout)
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}
