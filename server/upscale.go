package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"tsdsr/imageio"
	"tsdsr/sr"
)

// request holds a parsed POST /v1/upscale.
type request struct {
	data    []byte
	opts    sr.Options
	format  string // "png" or "jpeg"
	quality int
}

// httpError is an error with the status and code to answer with.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badOption(format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, "bad_option", fmt.Sprintf(format, args...)}
}

// upscale handles POST /v1/upscale: the whole body is read under the size
// and rate limits before admission, so a slow upload holds no slot; then
// decoding and the output checks, queueing for a worker, and every stage of
// the job on that worker.
func (s *Server) upscale(w http.ResponseWriter, r *http.Request) {
	// A declared length over the limit is refused without reading a byte.
	if r.ContentLength > s.cfg.MaxBody {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, s.cfg.MaxBody))
		return
	}
	select {
	case s.uploads <- struct{}{}:
	default:
		s.counters.rejected.Add(1)
		// Close rather than read the body net/http would otherwise drain.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too_many_uploads", fmt.Sprintf("%d uploads are already being read; retry later", s.cfg.MaxUploads))
		return
	}
	req, herr := s.readRequest(w, r)
	<-s.uploads
	if herr != nil {
		if herr.status == statusClientClosed {
			annotate(w, slog.String("code", herr.code))
			if rec, ok := w.(*recorder); ok {
				rec.clientGone = true
			}
			return
		}
		if herr.status == http.StatusRequestTimeout {
			w.Header().Set("Connection", "close")
		}
		writeError(w, herr.status, herr.code, herr.msg)
		return
	}
	select {
	case s.admit <- struct{}{}:
		defer func() { <-s.admit }()
	default:
		s.counters.rejected.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter()))
		writeError(w, http.StatusTooManyRequests, "queue_full", "all workers are busy and the queue is full; retry later")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()

	in, err := imageio.Decode(bytes.NewReader(req.data), &imageio.DecodeOptions{MaxPixels: s.cfg.MaxPixels})
	req.data = nil
	if err != nil {
		herr := decodeError(err)
		writeError(w, herr.status, herr.code, herr.msg)
		return
	}
	p := sr.New(s.cfg.Upscaler, &req.opts)
	ow, oh, err := p.OutputSize(in.Width, in.Height)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_option", err.Error())
		return
	}
	if int64(ow)*int64(oh) > int64(s.cfg.MaxOutputPixels) {
		writeError(w, http.StatusRequestEntityTooLarge, "output_too_large",
			fmt.Sprintf("output %dx%d exceeds the limit of %d pixels", ow, oh, s.cfg.MaxOutputPixels))
		return
	}
	mem, err := p.MemoryEstimate(in.Width, in.Height)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_option", err.Error())
		return
	}
	if mem += int64(ow) * int64(oh) * encodeBytesPerPixel; mem > s.cfg.MaxJobMemory {
		writeError(w, http.StatusRequestEntityTooLarge, "output_too_large",
			fmt.Sprintf("a %dx%d to %dx%d job needs about %d MiB, over the limit of %d MiB", in.Width, in.Height, ow, oh, mem>>20, s.cfg.MaxJobMemory>>20))
		return
	}
	annotate(w, slog.String("in", fmt.Sprintf("%dx%dx%d/%d", in.Width, in.Height, in.Channels, in.BitDepth)),
		slog.String("out", fmt.Sprintf("%dx%d", ow, oh)))

	// Wait for a worker.
	s.counters.queued.Add(1)
	select {
	case s.work <- struct{}{}:
		s.counters.queued.Add(-1)
	case <-ctx.Done():
		s.counters.queued.Add(-1)
		s.cancelled(w, r, ctx)
		return
	}
	start := time.Now()
	body, err := s.run(ctx, p, in, req)
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			s.cancelled(w, r, ctx)
			return
		}
		s.log.Error("upscale failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "upscaling failed: "+err.Error())
		return
	}
	s.observeJob(elapsed)
	s.counters.pixels(in.Width*in.Height, ow*oh)
	ext := map[string]string{"png": "png", "jpeg": "jpg"}[req.format]
	h := w.Header()
	h.Set("Content-Type", "image/"+req.format)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Disposition", `inline; filename="upscaled.`+ext+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Model", s.cfg.Upscaler.Name())
	h.Set("X-Image-Size", fmt.Sprintf("%dx%d", ow, oh))
	ms := float64(elapsed.Microseconds()) / 1000
	h.Set("X-Processing-Ms", strconv.FormatFloat(ms, 'f', 1, 64))
	h.Set("Server-Timing", fmt.Sprintf("upscale;dur=%.1f", ms))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// encodeBytesPerPixel is what encoding adds to a job's memory per output
// pixel: the 8- or 16-bit copy the encoders read and the compressed bytes.
const encodeBytesPerPixel = 16

// run does every stage of a job (model, colour fix, resize, encode) on the
// worker slot the caller holds, and releases it even if the model panics
// (reported as an error: a 500, not a dead worker). A job that ends past
// its deadline fails with the context's error: a late result is not sent.
func (s *Server) run(ctx context.Context, p *sr.Pipeline, in *imageio.Image, req *request) (body []byte, err error) {
	s.counters.running.Add(1)
	defer func() {
		s.counters.running.Add(-1)
		<-s.work
		if v := recover(); v != nil {
			s.log.Error("model panicked", "panic", v, "stack", string(debug.Stack()))
			body, err = nil, fmt.Errorf("model panicked: %v", v)
		}
	}()
	out, err := p.UpscaleImage(ctx, in)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	buf := ctxWriter{ctx: ctx}
	if err := imageio.Encode(&buf, out, &imageio.EncodeOptions{Format: req.format, Quality: req.quality, BitDepth: out.BitDepth}); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("encoding the result: %w", err)
	}
	return buf.b.Bytes(), ctx.Err()
}

// ctxWriter is a buffer that fails writes once ctx is done, so an encoder
// stops at the deadline.
type ctxWriter struct {
	ctx context.Context
	b   bytes.Buffer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.b.Write(p)
}

// cancelled answers a job stopped by its context: the client left (nothing
// to send; logged as 499), or the deadline passed (503).
func (s *Server) cancelled(w http.ResponseWriter, r *http.Request, ctx context.Context) {
	if r.Context().Err() != nil {
		s.counters.cancel("client_gone")
		if rec, ok := w.(*recorder); ok {
			rec.clientGone = true
		}
		return
	}
	s.counters.cancel("timeout")
	writeError(w, http.StatusServiceUnavailable, "timeout", fmt.Sprintf("not done within %v", s.cfg.Timeout))
}

// uploadReader enforces the minimum upload rate through the connection's
// read deadline: before each read it moves the deadline to the moment the
// bytes received so far would fall below MinUploadRate since the start,
// after the grace period. Without a deadline-capable connection (an
// in-process test) it only reads.
type uploadReader struct {
	r     io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	rate  float64 // bytes per second
	n     int64
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if u.rc != nil {
		d := u.start.Add(u.grace + time.Duration(float64(u.n)/u.rate*float64(time.Second)))
		if err := u.rc.SetReadDeadline(d); err != nil {
			u.rc = nil
		}
	}
	n, err := u.r.Read(p)
	u.n += int64(n)
	return n, err
}

func (u *uploadReader) Close() error { return u.r.Close() }

// readRequest reads the image (raw body, or multipart field "image") within
// MaxBody, and the options from the query string and multipart fields.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (*request, *httpError) {
	rc := http.NewResponseController(w)
	up := &uploadReader{r: r.Body, rc: rc, start: time.Now(), grace: s.cfg.UploadGrace, rate: float64(s.cfg.MinUploadRate)}
	s.counters.uploading.Add(1)
	defer func() {
		s.counters.uploading.Add(-1)
		// The job has its own deadline: a read deadline left here would
		// end the connection's background read, which cancels the job.
		if up.rc != nil {
			rc.SetReadDeadline(time.Time{})
			rc.SetWriteDeadline(time.Now().Add(s.cfg.Timeout + 30*time.Second))
		}
	}()
	body := http.MaxBytesReader(w, up, s.cfg.MaxBody)
	vals := r.URL.Query()
	var data []byte
	var err error
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" && params["boundary"] != "" {
		data, err = readMultipart(body, params["boundary"], vals)
		if err == nil {
			// Reach the end of the body so a disconnect during the job is
			// noticed (net/http watches the connection only after EOF).
			_, err = io.Copy(io.Discard, body)
		}
		if err == nil && data == nil {
			return nil, &httpError{http.StatusBadRequest, "missing_image", `multipart body has no field named "image"`}
		}
	} else {
		data, err = io.ReadAll(body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, &httpError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body exceeds the limit of %d bytes", s.cfg.MaxBody)}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &httpError{http.StatusRequestTimeout, "body_timeout",
				fmt.Sprintf("upload too slow: %d bytes in %v; after %v the body must arrive at %d bytes/s or more", up.n, time.Since(up.start).Round(time.Millisecond), s.cfg.UploadGrace, s.cfg.MinUploadRate)}
		case r.Context().Err() != nil:
			return nil, &httpError{statusClientClosed, "client_gone", "the client went away during the upload"}
		}
		return nil, &httpError{http.StatusBadRequest, "bad_body", "reading the body: " + err.Error()}
	}
	if len(data) == 0 {
		return nil, &httpError{http.StatusBadRequest, "empty_body", "no image in the request body"}
	}
	req := &request{data: data}
	if herr := s.parseOptions(vals, req); herr != nil {
		return nil, herr
	}
	return req, nil
}

// readMultipart returns the "image" part's bytes (nil if absent) and adds
// the small text fields to vals.
func readMultipart(body io.Reader, boundary string, vals url.Values) ([]byte, error) {
	mr := multipart.NewReader(body, boundary)
	var data []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		name := part.FormName()
		switch {
		case name == "image":
			if data, err = io.ReadAll(part); err != nil {
				return nil, err
			}
			if data == nil {
				data = []byte{}
			}
		case name != "":
			v, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				return nil, err
			}
			vals.Set(name, strings.TrimSpace(string(v)))
		}
		part.Close()
	}
}

// parseOptions reads scale, width, height, color_fix, format and quality
// (unknown names, seed included, are refused: the models draw no noise). The default format follows the input: JPEG stays JPEG, anything
// else becomes PNG.
func (s *Server) parseOptions(v url.Values, req *request) *httpError {
	for _, k := range slices.Sorted(maps.Keys(v)) {
		if !slices.Contains(optionNames, k) {
			return badOption("unknown option %q: known are %s", k, strings.Join(optionNames, ", "))
		}
	}
	req.opts.Model = s.cfg.Model
	if q := v.Get("scale"); q != "" {
		f, err := strconv.ParseFloat(q, 64)
		if err != nil || !(f > 0 && f <= MaxScale) || math.IsNaN(f) {
			return badOption("scale %q: want a number in (0, %d]", q, MaxScale)
		}
		if f != float64(s.cfg.Upscaler.Scale()) {
			req.opts.OutScale = f
		}
	}
	for _, k := range []string{"width", "height"} {
		if q := v.Get(k); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n <= 0 || n > 1<<16 {
				return badOption("%s %q: want a positive integer", k, q)
			}
			if k == "width" {
				req.opts.Width = n
			} else {
				req.opts.Height = n
			}
		}
	}
	cf, err := sr.ParseColorFix(v.Get("color_fix"))
	if err != nil {
		return badOption("color_fix %q: want wavelet, adain or none", v.Get("color_fix"))
	}
	req.opts.ColorFix = cf
	switch f := strings.ToLower(v.Get("format")); f {
	case "":
		req.format = "png"
		if bytes.HasPrefix(req.data, []byte{0xff, 0xd8, 0xff}) {
			req.format = "jpeg"
		}
	case "png":
		req.format = "png"
	case "jpeg", "jpg":
		req.format = "jpeg"
	default:
		return badOption("format %q: want png or jpeg", f)
	}
	req.quality = 90
	if q := v.Get("quality"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 100 {
			return badOption("quality %q: want 1..100", q)
		}
		req.quality = n
	}
	return nil
}

// optionNames are the options parseOptions reads; others are refused.
var optionNames = []string{"scale", "width", "height", "color_fix", "format", "quality"}

// decodeError maps imageio's errors to statuses: all are the client's.
func decodeError(err error) *httpError {
	switch {
	case errors.Is(err, imageio.ErrTooLarge):
		return &httpError{http.StatusRequestEntityTooLarge, "too_large", err.Error()}
	case errors.Is(err, imageio.ErrUnsupported):
		return &httpError{http.StatusUnsupportedMediaType, "unsupported_format", err.Error()}
	case errors.Is(err, imageio.ErrCorrupt):
		return &httpError{http.StatusBadRequest, "corrupt_image", err.Error()}
	}
	return &httpError{http.StatusBadRequest, "bad_image", err.Error()}
}

// observeJob folds a job's duration into the Retry-After estimate.
func (s *Server) observeJob(d time.Duration) {
	old := math.Float64frombits(s.avgJob.Load())
	s.avgJob.Store(math.Float64bits(0.8*old + 0.2*d.Seconds()))
}

// retryAfter estimates, in whole seconds, when a queue slot frees up: the
// time to drain the queue at the average job duration.
func (s *Server) retryAfter() int {
	avg := math.Float64frombits(s.avgJob.Load())
	sec := math.Ceil(avg * float64(s.cfg.Queue+s.cfg.Workers) / float64(s.cfg.Workers))
	return int(min(max(sec, 1), 120))
}
