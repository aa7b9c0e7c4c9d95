// Package server is tsdsr's HTTP upscaling service: a JSON-erroring API
// around an sr.Upscaler, Prometheus metrics, and an embedded web page.
//
// It is built to be left running: a request body is read whole, under a
// size limit and a minimum upload rate, before the request may take a queue
// slot, so slow clients cost a connection and not the service; decoded
// input and output pixels and a job's estimated memory are bounded before
// heavy work; a fixed number of workers run every stage of a job (model,
// colour fix, resize, encode) behind a bounded queue (429 when full); every
// job has a deadline, checked to the end, and stops when its client goes
// away; requests from other sites (Origin, Sec-Fetch-Site) and with
// unexpected Host headers (DNS rebinding) are refused; shutdown lets
// running jobs finish.
package server

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tsdsr/sr"
)

// Defaults for the zero fields of Config. The default model needs about
// 16.5 s per native output megapixel on the 2-core development VM when it
// is otherwise idle, and up to 46 s when it is shared (docs/api.md): a
// 640x480 input (4.9 MP at 4x) takes 81 s idle and about 225 s shared, so
// the largest default input finishes within the default timeout alone.
const (
	DefaultMaxPixels       = 640 * 480 // input pixels
	DefaultMaxOutputPixels = 16 << 20  // output pixels: 4096x4096
	DefaultMaxJobMemory    = 2 << 30   // estimated bytes of one job's image buffers
	DefaultMaxBody         = 32 << 20
	DefaultWorkers         = 1 // each job already uses every core through internal/parallel
	DefaultQueue           = 8
	DefaultTimeout         = 5 * time.Minute
	// DefaultUploadGrace and DefaultMinUploadRate bound a body's upload:
	// after the grace period a client must have sent MinUploadRate bytes
	// per second since the start, or it gets 408.
	DefaultUploadGrace   = 10 * time.Second
	DefaultMinUploadRate = 32 << 10
	// DefaultMaxUploads bounds the bodies read at once, and so their
	// memory (MaxUploads x MaxBody).
	DefaultMaxUploads = 32
	// MaxScale bounds the scale option: beyond 8x a resize, not a model,
	// does the work and the output only wastes memory.
	MaxScale = 8
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Upscaler is the model; it must be safe for concurrent use.
	Upscaler sr.Upscaler
	// Model carries the tiling settings to the model.
	Model sr.ModelOptions
	// MaxPixels bounds the input's width*height, checked from the image
	// header before pixels are decoded.
	MaxPixels int
	// MaxOutputPixels bounds the output's width*height, and MaxJobMemory
	// the estimated bytes of a job's whole-image buffers (sr's
	// MemoryEstimate plus encoding), both checked before the job queues.
	MaxOutputPixels int
	MaxJobMemory    int64
	// MaxBody bounds the request body in bytes.
	MaxBody int64
	// UploadGrace and MinUploadRate (bytes per second) bound the upload:
	// past the grace period, a body arriving slower than MinUploadRate
	// on average is cut off with 408.
	UploadGrace   time.Duration
	MinUploadRate int64
	// MaxUploads bounds the bodies being read at once; beyond it
	// requests get 429. Slow ones are cut off by MinUploadRate, so filling
	// these slots takes MaxUploads connections sending at that rate.
	MaxUploads int
	// Workers is the number of jobs run at once; Queue is how many more
	// may wait (negative: none). Beyond Workers+Queue requests get 429.
	Workers, Queue int
	// Timeout is the per-request deadline from the end of the upload:
	// queueing, decoding, the model and encoding.
	Timeout time.Duration
	// AllowedHosts are Host names accepted besides IP addresses and
	// localhost (the listen host, a reverse proxy's name); "*" accepts
	// any. Each is also a trusted origin for cross-origin requests.
	AllowedHosts []string
	// Logger receives one line per request; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves the API and the web page. Create it with New; it is an
// http.Handler, and Serve runs it with graceful shutdown.
type Server struct {
	cfg      Config
	log      *slog.Logger
	uploads  chan struct{} // MaxUploads slots: bodies being read
	admit    chan struct{} // Workers+Queue slots: requests past admission
	work     chan struct{} // Workers slots: jobs running
	counters *counters
	hosts    map[string]bool // AllowedHosts, lower case; "*" accepts any
	cop      *http.CrossOriginProtection
	ready    atomic.Bool
	// avgJob is an exponential moving average of job seconds (float64
	// bits), used to suggest Retry-After.
	avgJob atomic.Uint64
	mux    *http.ServeMux
}

//go:embed web
var webFS embed.FS

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Upscaler == nil {
		return nil, errors.New("server: no upscaler")
	}
	if cfg.MaxPixels < 0 || cfg.MaxOutputPixels < 0 || cfg.MaxUploads < 0 || cfg.MaxJobMemory < 0 || cfg.MaxBody < 0 || cfg.MinUploadRate < 0 || cfg.UploadGrace < 0 {
		return nil, errors.New("server: negative limit")
	}
	if err := sr.ValidateTiling(cfg.Model.Tile, cfg.Model.TileOverlap); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// A zero limit is the default one.
	cfg.MaxPixels = cmp.Or(cfg.MaxPixels, DefaultMaxPixels)
	cfg.MaxOutputPixels = cmp.Or(cfg.MaxOutputPixels, DefaultMaxOutputPixels)
	cfg.MaxJobMemory = cmp.Or(cfg.MaxJobMemory, DefaultMaxJobMemory)
	cfg.MaxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	cfg.UploadGrace = cmp.Or(cfg.UploadGrace, DefaultUploadGrace)
	cfg.MinUploadRate = cmp.Or(cfg.MinUploadRate, DefaultMinUploadRate)
	cfg.MaxUploads = cmp.Or(cfg.MaxUploads, DefaultMaxUploads)
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	switch {
	case cfg.Queue < 0:
		cfg.Queue = 0
	case cfg.Queue == 0:
		cfg.Queue = DefaultQueue
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		uploads:  make(chan struct{}, cfg.MaxUploads),
		admit:    make(chan struct{}, cfg.Workers+cfg.Queue),
		work:     make(chan struct{}, cfg.Workers),
		counters: newCounters(cfg.Upscaler),
		hosts:    map[string]bool{},
		cop:      http.NewCrossOriginProtection(),
		mux:      http.NewServeMux(),
	}
	for _, h := range cfg.AllowedHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		s.hosts[h] = true
		if h == "*" {
			continue
		}
		for _, scheme := range []string{"http://", "https://"} {
			if err := s.cop.AddTrustedOrigin(scheme + h); err != nil {
				return nil, fmt.Errorf("server: allowed host %q: %w", h, err)
			}
		}
	}
	s.ready.Store(true)
	s.avgJob.Store(math.Float64bits(1))

	page, err := fs.ReadFile(webFS, "web/index.html")
	if err != nil {
		return nil, err
	}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		// Everything the page needs is inline or same-origin.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'")
		w.Write(page)
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /metrics", s.counters.serve(s))
	s.mux.HandleFunc("POST /v1/upscale", s.upscale)
	s.mux.HandleFunc("/v1/upscale", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST with the image as the body or a multipart field named image")
	})
	for _, p := range []string{"/{$}", "/healthz", "/readyz", "/v1/models", "/metrics"} {
		s.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" "+r.URL.Path+": use GET")
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
	return s, nil
}

// SetReady sets what /readyz reports, e.g. false while a model loads.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// ServeHTTP routes r, counts it in the metrics and logs one line for it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set("X-Content-Type-Options", "nosniff")
	if !s.hostAllowed(r.Host) {
		rec.Header().Set("Connection", "close") // do not read its body
		// A name that merely resolves here (DNS rebinding) must not let
		// another site's page read the answers.
		writeError(rec, http.StatusForbidden, "bad_host", fmt.Sprintf("Host %q is not this server's; start it with --allowed-hosts to accept it", r.Host))
	} else if err := s.cop.Check(r); err != nil {
		rec.Header().Set("Connection", "close")
		writeError(rec, http.StatusForbidden, "cross_origin", "cross-site requests are refused: "+err.Error())
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if rec.clientGone {
		status = statusClientClosed
	}
	d := time.Since(start)
	route := routeLabel(r.URL.Path)
	s.counters.request(route, status, d)
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.Int64("bytes", rec.bytes),
		slog.Duration("dur", d), slog.String("remote", r.RemoteAddr),
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", append(attrs, rec.attrs...)...)
}

// hostAllowed reports whether a request's Host may be answered: empty (an
// HTTP/1.0 client), an IP address, localhost or a name under it (browsers
// resolve those to loopback themselves), or one of AllowedHosts.
func (s *Server) hostAllowed(host string) bool {
	if host == "" || s.hosts["*"] {
		return true
	}
	host = strings.ToLower(host)
	if s.hosts[host] {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".")
	return net.ParseIP(name) != nil || name == "localhost" || strings.HasSuffix(name, ".localhost") || s.hosts[name]
}

// Serve serves on ln until ctx is cancelled, then stops accepting
// connections and waits for running requests (at most Timeout plus a
// grace period) before returning. /readyz fails during the drain.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Uploads set their own read deadline from the minimum rate and
		// the write deadline from the end of the upload; these bound the
		// other routes.
		ReadTimeout:  s.cfg.UploadGrace + 10*time.Second,
		WriteTimeout: s.cfg.Timeout + 30*time.Second,
		IdleTimeout:  time.Minute,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.ready.Store(false)
	s.log.Info("shutting down: finishing running jobs")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout+10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "model not loaded or shutting down")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "model": s.cfg.Upscaler.Name()})
}

// modelInfo is one entry of GET /v1/models.
type modelInfo struct {
	Name    string `json:"name"`
	Scale   int    `json:"scale"`
	Default bool   `json:"default"`
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"models": []modelInfo{{Name: s.cfg.Upscaler.Name(), Scale: s.cfg.Upscaler.Scale(), Default: true}},
		"limits": map[string]any{
			"max_pixels":        s.cfg.MaxPixels,
			"max_output_pixels": s.cfg.MaxOutputPixels,
			"max_job_memory":    s.cfg.MaxJobMemory,
			"max_body":          s.cfg.MaxBody,
			"min_upload_rate":   s.cfg.MinUploadRate,
			"max_uploads":       s.cfg.MaxUploads,
			"upload_grace_sec":  s.cfg.UploadGrace.Seconds(),
			"max_scale":         MaxScale,
			"workers":           s.cfg.Workers,
			"queue":             s.cfg.Queue,
			"timeout_sec":       s.cfg.Timeout.Seconds(),
		},
	})
}

// statusClientClosed is logged and counted (nginx's convention) when the
// client went away before the answer; nothing is sent.
const statusClientClosed = 499

// recorder remembers the status and size of a response, and extra log
// attributes set by handlers.
type recorder struct {
	http.ResponseWriter
	status     int
	bytes      int64
	clientGone bool
	attrs      []slog.Attr
	mu         sync.Mutex
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) annotate(attrs ...slog.Attr) {
	r.mu.Lock()
	r.attrs = append(r.attrs, attrs...)
	r.mu.Unlock()
}

// annotate adds log attributes to the request's line when w is ours.
func annotate(w http.ResponseWriter, attrs ...slog.Attr) {
	if r, ok := w.(*recorder); ok {
		r.annotate(attrs...)
	}
}

// apiError is the JSON body of every error response.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	annotate(w, slog.String("code", code))
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// routeLabel keeps the metrics' path label to the known routes.
func routeLabel(p string) string {
	switch p {
	case "/", "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/upscale":
		return p
	}
	return "other"
}
