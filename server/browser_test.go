package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// artifactsDir is where screenshots go: $TSDSR_ARTIFACTS when set (CI keeps
// it), else the test's temporary directory.
func artifactsDir(t *testing.T) string {
	if d := os.Getenv("TSDSR_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// pageState is what the test reads back from the page after an upscale.
type pageState struct {
	Status                      string
	BeforeW, BeforeH            int
	AfterW, AfterH              int
	BeforeShown, AfterShown     bool
	Download                    string
	ScrollWidth, ViewportWidth  int
	PosAfterSlide, ModelTag     string
	DisplayedW, DisplayedAfterW float64
}

const readState = `(() => {
  const b = document.getElementById("before"), a = document.getElementById("after");
  const s = document.getElementById("slider");
  s.value = 20; s.dispatchEvent(new Event("input"));
  return {
    Status: document.getElementById("status").textContent,
    BeforeW: b.naturalWidth, BeforeH: b.naturalHeight, AfterW: a.naturalWidth, AfterH: a.naturalHeight,
    BeforeShown: b.complete && b.offsetWidth > 0, AfterShown: a.complete && a.offsetWidth > 0,
    Download: document.getElementById("download").download,
    ScrollWidth: document.documentElement.scrollWidth, ViewportWidth: window.innerWidth,
    PosAfterSlide: document.getElementById("compare").style.getPropertyValue("--pos"),
    ModelTag: document.getElementById("modeltag").textContent,
    DisplayedW: b.getBoundingClientRect().width, DisplayedAfterW: a.getBoundingClientRect().width,
  };
})()`

// TestBrowserUpscale drives the embedded page in headless Chromium: upload
// a real JPEG, wait for the result, and check the comparison slider holds
// the bicubic-scaled input and the result at the output size, on a desktop
// and on a phone-sized viewport.
func TestBrowserUpscale(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
	}
	input, err := filepath.Abs("../../shared/data/real-lr/edge-cases/0014.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(input); err != nil {
		t.Skipf("test image missing: %v", err)
	}
	s, _ := newServer(t, Config{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	dir := artifactsDir(t)

	for _, vp := range []struct {
		name string
		w, h int
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		t.Run(vp.name, func(t *testing.T) {
			opts := append(chromedp.DefaultExecAllocatorOptions[:],
				chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
				chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
				chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
				chromedp.WindowSize(vp.w, vp.h))
			actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
			defer cancelA()
			ctx, cancel := chromedp.NewContext(actx)
			defer cancel()
			ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
			defer cancelT()

			err := chromedp.Do(ctx,
				chromedp.EmulateViewport(int64(vp.w), int64(vp.h)),
				chromedp.Navigate(ts.URL+"/"),
				chromedp.WaitReady("#file"),
				chromedp.SetUploadFiles("#file", []string{input}),
			)
			if err != nil {
				t.Fatal(err)
			}
			done, err := chromedp.Run(ctx, chromedp.Poll[string](
				`!document.getElementById("result").hidden ? "ok" : (document.getElementById("status").className === "err" ? "error" : false)`,
				chromedp.WithPollingTimeout(60*time.Second)))
			if err != nil {
				t.Fatal(err)
			}
			st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readState))
			if err != nil {
				t.Fatal(err)
			}
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 means PNG
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, fmt.Sprintf("browser-%s.png", vp.name))
			if err := os.WriteFile(path, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s; page: %+v", path, st)

			if done != "ok" {
				t.Fatalf("page reported an error: %q", st.Status)
			}
			// 0014.jpg is 179x179; at the default 4x both sides of the
			// slider are 716x716.
			if st.BeforeW != 716 || st.BeforeH != 716 || st.AfterW != 716 || st.AfterH != 716 {
				t.Errorf("slider images %dx%d and %dx%d, want 716x716 both", st.BeforeW, st.BeforeH, st.AfterW, st.AfterH)
			}
			if !st.BeforeShown || !st.AfterShown || st.DisplayedW != st.DisplayedAfterW {
				t.Errorf("images not both displayed at the same width: %+v", st)
			}
			if st.Download != "0014_x4.jpg" || st.ModelTag != "bicubic" || st.PosAfterSlide != "20%" {
				t.Errorf("download %q, model tag %q, slider position %q", st.Download, st.ModelTag, st.PosAfterSlide)
			}
			if st.ScrollWidth > st.ViewportWidth {
				t.Errorf("page scrolls sideways: %d px wide in a %d px viewport", st.ScrollWidth, st.ViewportWidth)
			}
		})
	}
}
