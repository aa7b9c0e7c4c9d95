package loadtest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"tsdsr/server"
	"tsdsr/sr"
)

func TestLoadTestSmall(t *testing.T) {
	s, err := server.New(server.Config{Upscaler: sr.Bicubic{}, Workers: 2, Queue: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	rep, err := LoadTest(context.Background(), LoadConfig{URL: ts.URL, Requests: 40, Concurrency: 4, Width: 32, Height: 32})
	if err != nil {
		t.Fatal(err)
	}
	// Concurrency 4 fits in Workers+Queue = 4: nothing may be refused.
	if rep.Requests != 40 || rep.OK != 40 || rep.Errors != 0 || rep.P50 <= 0 || rep.P99 < rep.P50 {
		t.Fatalf("%v %v", rep, rep.ErrorSamples)
	}
	t.Log(rep)
}
