package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tsdsr/sr"
)

// serveLoopback runs s through Serve (the production timeouts) on a
// loopback port until the test ends.
func serveLoopback(t *testing.T, s *Server) string {
	t.Helper()
	addr, stop, done := serve(t, s)
	t.Cleanup(func() { stop(); <-done })
	return addr
}

// serve starts s's Serve on a loopback port and returns its address, the
// cancel of Serve's context, and the channel that receives what Serve
// returns.
func serve(t *testing.T, s *Server) (addr string, stop context.CancelFunc, served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	return ln.Addr().String(), stop, done
}

// startUpload opens a connection and sends the headers of a declared
// 100000-byte PNG upload and the PNG signature; the body never completes.
func startUpload(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/upscale HTTP/1.1\r\nHost: %s\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n\x89PNG\r\n\x1a\n", addr)
	return c
}

// statusOf reads the status code of the response on c, waiting at most 10 s.
func statusOf(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSlowUploadsHoldNoSlot: nine clients dripping a PNG at 10 bytes/s
// used to take every admission slot for as long as they dripped, so a
// normal request got 429. Bodies are now read before admission, and the
// drippers are cut off with 408 once the grace period is over.
func TestSlowUploadsHoldNoSlot(t *testing.T) {
	s, _ := newServer(t, Config{Workers: 1, Queue: -1, UploadGrace: time.Second, MinUploadRate: 1 << 10})
	addr := serveLoopback(t, s)
	stop := make(chan struct{})
	defer close(stop)
	var drips []net.Conn
	for range 9 {
		c := startUpload(t, addr)
		drips = append(drips, c)
		go func() {
			for range 100 { // 10 s at most
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := c.Write([]byte{0}); err != nil {
					return
				}
			}
		}()
	}
	waitFor(t, "nine uploads in progress", func() bool { return s.counters.uploading.Load() == 9 })
	resp, err := http.Post("http://"+addr+"/v1/upscale", "image/png", bytes.NewReader(encode(t, noiseImage(8, 8, 11), "png")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("normal request during nine slow uploads: %d, want 200", resp.StatusCode)
	}
	for i, c := range drips {
		if code := statusOf(t, c); code != http.StatusRequestTimeout {
			t.Errorf("slow upload %d: %d, want 408", i, code)
		}
	}
	waitFor(t, "the uploads to end", func() bool { return s.counters.uploading.Load() == 0 })
}

// TestUploadSlotsAreBounded: bodies being read are bounded in number (and
// so in memory); one more gets 429 too_many_uploads at once.
func TestUploadSlotsAreBounded(t *testing.T) {
	s, _ := newServer(t, Config{MaxUploads: 2})
	addr := serveLoopback(t, s)
	startUpload(t, addr)
	startUpload(t, addr)
	waitFor(t, "two uploads in progress", func() bool { return s.counters.uploading.Load() == 2 })
	c := startUpload(t, addr)
	if code := statusOf(t, c); code != 429 {
		t.Fatalf("third upload: %d, want 429", code)
	}
}

// TestClientGoneMidUploadIs499: a client that closes during its upload is
// logged and counted as 499, not 400 bad_body.
func TestClientGoneMidUploadIs499(t *testing.T) {
	s, logs := newServer(t, Config{})
	c := startUpload(t, serveLoopback(t, s))
	c.Close()
	waitFor(t, "the 499", func() bool {
		return strings.Contains(do(t, s, "GET", "/metrics", "", nil).Body.String(), `tsdsr_http_requests_total{path="/v1/upscale",code="499"} 1`)
	})
	if l := logs.String(); !strings.Contains(l, "status=499") || !strings.Contains(l, "code=client_gone") || strings.Contains(l, "bad_body") {
		t.Errorf("log:\n%s", l)
	}
}

// TestOutputLimits: the output is bounded by its own pixel limit and by
// the job's estimated memory, not by 64 times the input limit (a 1x1 PNG
// asking for 16000x16000 cost 30 s and 6 GB).
func TestOutputLimits(t *testing.T) {
	tiny := encode(t, noiseImage(1, 1, 12), "png")
	cases := []struct {
		cfg    Config
		target string
	}{
		{Config{MaxPixels: 100, MaxOutputPixels: 1000}, "/v1/upscale?width=80&height=80"},
		{Config{MaxJobMemory: 1 << 20}, "/v1/upscale?width=200&height=200"},
		{Config{}, "/v1/upscale?width=16000&height=16000"},
	}
	for _, c := range cases {
		s, _ := newServer(t, c.cfg)
		w := do(t, s, "POST", c.target, "image/png", tiny)
		if w.Code != 413 || !strings.Contains(w.Body.String(), `"output_too_large"`) {
			t.Fatalf("%+v %s: %d %s", c.cfg, c.target, w.Code, w.Body)
		}
	}
	s, _ := newServer(t, Config{MaxJobMemory: 1 << 20})
	if w := do(t, s, "POST", "/v1/upscale?width=100&height=100", "image/png", tiny); w.Code != 200 {
		t.Fatalf("a job within the memory limit: %d %s", w.Code, w.Body)
	}
}

// TestDeadlineHoldsToTheEnd: the deadline used to be checked last before
// the resize, so a 1x1 PNG asking for 2000x2000 under a 20 ms timeout
// spent its time in the resize and the encoder and still got 200. Every
// stage now runs under the deadline and a late job answers 503.
func TestDeadlineHoldsToTheEnd(t *testing.T) {
	s, _ := newServer(t, Config{Timeout: 20 * time.Millisecond})
	w := do(t, s, "POST", "/v1/upscale?width=2000&height=2000", "", encode(t, noiseImage(1, 1, 13), "png"))
	if w.Code != 503 || !strings.Contains(w.Body.String(), `"timeout"`) {
		t.Fatalf("%d %.200s", w.Code, w.Body)
	}
}

func TestBadTilingRefused(t *testing.T) {
	for _, tile := range [][2]int{{1, 0}, {64, 64}, {-2, 0}} {
		if _, err := New(Config{Upscaler: sr.Bicubic{}, Model: sr.ModelOptions{Tile: tile[0], TileOverlap: tile[1]}}); err == nil {
			t.Errorf("tile %d overlap %d accepted", tile[0], tile[1])
		}
	}
}

// TestMethodsHostsAndOrigins covers the small protocol checks: 405 with
// Allow on GET-only routes, nosniff everywhere, Host checked against
// loopback names and AllowedHosts (DNS rebinding), and cross-site
// browser requests refused while the page's own same-origin upload works.
func TestMethodsHostsAndOrigins(t *testing.T) {
	s, _ := newServer(t, Config{})
	img := encode(t, noiseImage(8, 8, 14), "png")
	mp, mpType := multipartBody(t, img, nil)
	send := func(method, target, host string, hdr map[string]string, ctype string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, bytes.NewReader(body))
		r.Host = host
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	local := "127.0.0.1:8080"
	cases := []struct {
		name, method, target, host string
		hdr                        map[string]string
		status                     int
		code                       string
	}{
		{"post-healthz", "POST", "/healthz", local, nil, 405, "method_not_allowed"},
		{"delete-page", "DELETE", "/", local, nil, 405, "method_not_allowed"},
		{"rebound-host", "GET", "/v1/models", "attacker.example:8080", nil, 403, "bad_host"},
		{"cross-site-fetch", "POST", "/v1/upscale", local, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross_origin"},
		{"foreign-origin", "POST", "/v1/upscale", local, map[string]string{"Origin": "https://attacker.example"}, 403, "cross_origin"},
		{"same-origin", "POST", "/v1/upscale", local, map[string]string{"Origin": "http://" + local, "Sec-Fetch-Site": "same-origin"}, 200, ""},
		{"localhost", "POST", "/v1/upscale", "localhost:8080", nil, 200, ""},
		{"ipv6-loopback", "GET", "/healthz", "[::1]:8080", nil, 200, ""},
		{"unknown-path", "GET", "/nothing", local, nil, 404, "not_found"},
	}
	for _, c := range cases {
		w := send(c.method, c.target, c.host, c.hdr, mpType, mp)
		var e apiError
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != c.status || e.Code != c.code {
			t.Errorf("%s: %d %q, want %d %q", c.name, w.Code, e.Code, c.status, c.code)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff header", c.name)
		}
		if c.status == 405 && w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: Allow %q", c.name, w.Header().Get("Allow"))
		}
	}
	open, _ := newServer(t, Config{AllowedHosts: []string{"*"}})
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.Host = "anything.example"
	w := httptest.NewRecorder()
	open.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("--allowed-hosts '*': %d", w.Code)
	}
}
