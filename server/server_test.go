package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tsdsr/imageio"
	"tsdsr/sr"
)

func encode(t testing.TB, m *imageio.Image, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := imageio.Encode(&buf, m, &imageio.EncodeOptions{Format: format, Quality: 95, BitDepth: m.BitDepth}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newServer(t testing.TB, cfg Config) (*Server, *bytes.Buffer) {
	t.Helper()
	logs := &bytes.Buffer{}
	if cfg.Upscaler == nil {
		cfg.Upscaler = sr.Bicubic{}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil))
	// httptest.NewRequest's default Host.
	cfg.AllowedHosts = append(cfg.AllowedHosts, "example.com")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func do(t testing.TB, h http.Handler, method, target, ctype string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func multipartBody(t testing.TB, image []byte, fields map[string]string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if image != nil {
		fw, _ := mw.CreateFormFile("image", "in.png")
		fw.Write(image)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestUpscaleHappyPaths(t *testing.T) {
	s, logs := newServer(t, Config{})
	rgb := noiseImage(12, 9, 1)
	deep := noiseImage(10, 6, 2)
	deep.BitDepth = 16
	rgba := noiseImage(7, 5, 3)
	rgba.Alpha = make([]float32, 35)
	for i := range rgba.Alpha {
		rgba.Alpha[i] = float32(i) / 34
	}
	gray := imageio.NewImage(6, 6, 1)
	for i := range gray.Pix {
		gray.Pix[i] = float32(i) / 35
	}
	mp, mpType := multipartBody(t, encode(t, rgb, "png"), map[string]string{"scale": "2", "format": "jpeg", "quality": "80"})

	cases := []struct {
		name, target, ctype string
		body                []byte
		wantType            string
		w, h, ch, depth     int
		alpha               bool
	}{
		{"png", "/v1/upscale", "image/png", encode(t, rgb, "png"), "image/png", 48, 36, 3, 8, false},
		{"jpeg", "/v1/upscale?color_fix=adain", "image/jpeg", encode(t, rgb, "jpeg"), "image/jpeg", 48, 36, 3, 8, false},
		{"png16", "/v1/upscale", "", encode(t, deep, "png"), "image/png", 40, 24, 3, 16, false},
		{"rgba", "/v1/upscale?color_fix=none", "image/png", encode(t, rgba, "png"), "image/png", 28, 20, 3, 8, true},
		{"gray-outscale", "/v1/upscale?scale=1.5", "image/png", encode(t, gray, "png"), "image/png", 9, 9, 1, 8, false},
		{"multipart", "/v1/upscale", mpType, mp, "image/jpeg", 24, 18, 3, 8, false},
		{"width", "/v1/upscale?width=30&format=png", "image/png", encode(t, rgb, "png"), "image/png", 30, 23, 3, 8, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := do(t, s, "POST", c.target, c.ctype, c.body)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != c.wantType {
				t.Errorf("Content-Type %q want %q", got, c.wantType)
			}
			if w.Header().Get("X-Model") != "bicubic" || w.Header().Get("X-Processing-Ms") == "" {
				t.Errorf("headers %v", w.Header())
			}
			out, err := imageio.Decode(w.Body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if out.Width != c.w || out.Height != c.h || out.Channels != c.ch || out.BitDepth != c.depth || (out.Alpha != nil) != c.alpha {
				t.Errorf("got %dx%d ch=%d depth=%d alpha=%v", out.Width, out.Height, out.Channels, out.BitDepth, out.Alpha != nil)
			}
		})
	}
	if n := strings.Count(logs.String(), "msg=request"); n != len(cases) {
		t.Errorf("%d log lines for %d requests:\n%s", n, len(cases), logs)
	}
	if !strings.Contains(logs.String(), "status=200") || !strings.Contains(logs.String(), "out=48x36") {
		t.Errorf("log lacks status or size:\n%s", logs)
	}
}

// hugePNG is a valid PNG signature and IHDR declaring 100000x100000 RGB,
// followed by junk: a decoder that trusted it would allocate 30 GB.
func hugePNG() []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 100000)
	binary.BigEndian.PutUint32(ihdr[4:], 100000)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	b.Write(bytes.Repeat([]byte{0x55}, 1000))
	return b.Bytes()
}

func TestUpscaleBadInputs(t *testing.T) {
	s, _ := newServer(t, Config{MaxBody: 1 << 20, MaxPixels: 1 << 20})
	good := encode(t, noiseImage(16, 16, 4), "png")
	noImage, noImageType := multipartBody(t, nil, map[string]string{"scale": "2"})
	unknown, unknownType := multipartBody(t, good, map[string]string{"foo": "bar"})
	cases := []struct {
		name, method, target, ctype string
		body                        []byte
		status                      int
		code                        string
	}{
		{"not-an-image", "POST", "/v1/upscale", "", []byte("hello, this is text and not a picture"), 415, "unsupported_format"},
		{"truncated", "POST", "/v1/upscale", "image/png", good[:len(good)/2], 400, "corrupt_image"},
		{"empty", "POST", "/v1/upscale", "", nil, 400, "empty_body"},
		{"multipart-without-image", "POST", "/v1/upscale", noImageType, noImage, 400, "missing_image"},
		{"huge-header", "POST", "/v1/upscale", "image/png", hugePNG(), 413, "too_large"},
		{"scale-text", "POST", "/v1/upscale?scale=big", "", good, 400, "bad_option"},
		{"scale-zero", "POST", "/v1/upscale?scale=0", "", good, 400, "bad_option"},
		{"scale-huge", "POST", "/v1/upscale?scale=100", "", good, 400, "bad_option"},
		{"color-fix", "POST", "/v1/upscale?color_fix=sepia", "", good, 400, "bad_option"},
		{"format", "POST", "/v1/upscale?format=gif", "", good, 400, "bad_option"},
		{"quality", "POST", "/v1/upscale?quality=0&format=jpeg", "", good, 400, "bad_option"},
		{"seed", "POST", "/v1/upscale?seed=7", "", good, 400, "bad_option"},
		{"unknown-option", "POST", "/v1/upscale?scal=2", "", good, 400, "bad_option"},
		{"unknown-field", "POST", "/v1/upscale", unknownType, unknown, 400, "bad_option"},
		{"output-too-large", "POST", "/v1/upscale?width=60000", "", good, 413, "output_too_large"},
		{"body-too-large", "POST", "/v1/upscale", "", make([]byte, 2<<20), 413, "body_too_large"},
		{"get", "GET", "/v1/upscale", "", nil, 405, "method_not_allowed"},
		{"unknown-path", "GET", "/v2/nothing", "", nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := do(t, s, c.method, c.target, c.ctype, c.body)
			var e apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("status %d, body not JSON: %q", w.Code, w.Body)
			}
			if w.Code != c.status || e.Code != c.code || e.Error == "" {
				t.Fatalf("got %d %+v, want %d %q", w.Code, e, c.status, c.code)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// countingReader yields n zero bytes and counts how many were read.
type countingReader struct {
	n, read int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), c.n-c.read)
	clear(p[:k])
	c.read += k
	return int(k), nil
}

func TestBodyLimitStopsReading(t *testing.T) {
	const limit = 64 << 10
	s, _ := newServer(t, Config{MaxBody: limit})
	for _, declared := range []bool{true, false} {
		body := &countingReader{n: 50 << 20}
		r := httptest.NewRequest("POST", "/v1/upscale", body)
		r.ContentLength = -1 // chunked: only MaxBytesReader can stop it
		if declared {
			r.ContentLength = body.n
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != 413 || !strings.Contains(w.Body.String(), "body_too_large") {
			t.Fatalf("declared=%v: %d %s", declared, w.Code, w.Body)
		}
		if declared && body.read != 0 {
			t.Errorf("declared length over the limit: read %d bytes, want 0", body.read)
		}
		if body.read > limit+1 {
			t.Errorf("declared=%v: read %d bytes of a %d-byte limit", declared, body.read, limit)
		}
	}
}

// gate is a test model that blocks until released or cancelled.
type gate struct {
	started   chan struct{}
	release   chan struct{}
	cancelled atomic.Int32
}

func newGate() *gate {
	return &gate{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gate) Name() string { return "gate" }
func (g *gate) Scale() int   { return 4 }
func (g *gate) Upscale(ctx context.Context, img *imageio.Image) (*imageio.Image, error) {
	g.started <- struct{}{}
	select {
	case <-g.release:
		return sr.Bicubic{}.Upscale(ctx, img)
	case <-ctx.Done():
		g.cancelled.Add(1)
		return nil, ctx.Err()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestQueueFullIs429(t *testing.T) {
	g := newGate()
	s, _ := newServer(t, Config{Upscaler: g, Workers: 1, Queue: 1})
	body := encode(t, noiseImage(8, 8, 5), "png")
	codes := make(chan int, 2)
	for range 2 {
		go func() { codes <- do(t, s, "POST", "/v1/upscale", "", body).Code }()
	}
	waitFor(t, "one running and one queued job", func() bool {
		return s.counters.running.Load() == 1 && s.counters.queued.Load() == 1
	})
	w := do(t, s, "POST", "/v1/upscale", "", body)
	if w.Code != 429 || !strings.Contains(w.Body.String(), `"queue_full"`) || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third request: %d %v %s", w.Code, w.Header(), w.Body)
	}
	close(g.release)
	for range 2 {
		if c := <-codes; c != 200 {
			t.Errorf("queued request got %d", c)
		}
	}
	m := do(t, s, "GET", "/metrics", "", nil).Body.String()
	for _, want := range []string{`tsdsr_http_requests_total{path="/v1/upscale",code="429"} 1`, "tsdsr_jobs_rejected_total 1", `tsdsr_http_requests_total{path="/v1/upscale",code="200"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}

func TestClientDisconnectCancelsJob(t *testing.T) {
	g := newGate()
	s, logs := newServer(t, Config{Upscaler: g})
	ts := httptest.NewServer(s)
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/upscale", bytes.NewReader(encode(t, noiseImage(8, 8, 6), "png")))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-g.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	waitFor(t, "the job to see the cancellation", func() bool { return g.cancelled.Load() == 1 })
	waitFor(t, "the metric", func() bool {
		m := do(t, s, "GET", "/metrics", "", nil).Body.String()
		return strings.Contains(m, `tsdsr_jobs_cancelled_total{reason="client_gone"} 1`) &&
			strings.Contains(m, `tsdsr_http_requests_total{path="/v1/upscale",code="499"} 1`)
	})
	if !strings.Contains(logs.String(), "status=499") {
		t.Errorf("log lacks the 499 line:\n%s", logs)
	}
}

func TestDeadlineIs503(t *testing.T) {
	g := newGate()
	s, _ := newServer(t, Config{Upscaler: g, Timeout: 50 * time.Millisecond})
	w := do(t, s, "POST", "/v1/upscale", "", encode(t, noiseImage(8, 8, 7), "png"))
	if w.Code != 503 || !strings.Contains(w.Body.String(), `"timeout"`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if !strings.Contains(do(t, s, "GET", "/metrics", "", nil).Body.String(), `tsdsr_jobs_cancelled_total{reason="timeout"} 1`) {
		t.Error("timeout not counted")
	}
}

func TestProbesModelsMetricsPage(t *testing.T) {
	s, _ := newServer(t, Config{})
	if w := do(t, s, "GET", "/healthz", "", nil); w.Code != 200 {
		t.Errorf("healthz %d", w.Code)
	}
	if w := do(t, s, "GET", "/readyz", "", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "bicubic") {
		t.Errorf("readyz %d %s", w.Code, w.Body)
	}
	var models struct {
		Models []modelInfo    `json:"models"`
		Limits map[string]any `json:"limits"`
	}
	w := do(t, s, "GET", "/v1/models", "", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &models); err != nil || len(models.Models) != 1 || models.Models[0] != (modelInfo{"bicubic", 4, true}) {
		t.Errorf("models: %v %s", err, w.Body)
	}
	if models.Limits["max_pixels"] != float64(DefaultMaxPixels) {
		t.Errorf("limits %v", models.Limits)
	}
	do(t, s, "POST", "/v1/upscale", "", encode(t, noiseImage(10, 10, 8), "png"))
	w = do(t, s, "GET", "/metrics", "", nil)
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("metrics Content-Type %q", w.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE tsdsr_http_request_duration_seconds histogram",
		`tsdsr_http_request_duration_seconds_bucket{path="/v1/upscale",le="+Inf"} 1`,
		`tsdsr_http_request_duration_seconds_count{path="/v1/upscale"} 1`,
		`tsdsr_http_requests_total{path="/v1/upscale",code="200"} 1`,
		"tsdsr_queue_depth 0", "tsdsr_input_pixels_total 100", "tsdsr_output_pixels_total 1600",
		`tsdsr_model_info{model="bicubic",scale="4"} 1`,
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, w.Body)
		}
	}
	s.SetReady(false)
	if w := do(t, s, "GET", "/readyz", "", nil); w.Code != 503 {
		t.Errorf("readyz when not ready: %d", w.Code)
	}
	w = do(t, s, "GET", "/", "", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `id="slider"`) || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Errorf("page: %d %q", w.Code, w.Header())
	}
}

func TestShutdownFinishesRunningJobs(t *testing.T) {
	g := newGate()
	s, _ := newServer(t, Config{Upscaler: g})
	addr, stop, served := serve(t, s)
	codes := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/v1/upscale", "image/png", bytes.NewReader(encode(t, noiseImage(8, 8, 9), "png")))
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}()
	<-g.started
	stop() // SIGTERM arrives while the job runs
	waitFor(t, "readiness to drop", func() bool { return !s.ready.Load() })
	close(g.release)
	if c := <-codes; c != 200 {
		t.Errorf("running job got %d during shutdown, want 200", c)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if g.cancelled.Load() != 0 {
		t.Error("shutdown cancelled a running job")
	}
}

// panicky is a broken model.
type panicky struct{}

func (panicky) Name() string { return "panicky" }
func (panicky) Scale() int   { return 4 }
func (panicky) Upscale(context.Context, *imageio.Image) (*imageio.Image, error) {
	panic("broken model")
}

func TestModelPanicIs500AndFreesTheWorker(t *testing.T) {
	s, _ := newServer(t, Config{Upscaler: panicky{}, Workers: 1, Queue: -1})
	body := encode(t, noiseImage(4, 4, 10), "png")
	for range 2 { // the second request needs the worker the first one held
		w := do(t, s, "POST", "/v1/upscale", "", body)
		if w.Code != 500 || !strings.Contains(w.Body.String(), `"internal"`) {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	if n := s.counters.running.Load(); n != 0 {
		t.Errorf("%d jobs still counted as running", n)
	}
}
