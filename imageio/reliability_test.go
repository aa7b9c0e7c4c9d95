package imageio

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// noHang fails the test instead of letting a blocked call hang the suite.
func noHang(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

// TestReadFileOnlyRegular: a FIFO named like an image must be refused at
// once (it used to block for ever), and a symlink to /dev/zero without
// reading it (it used to read 1.6 GB).
func TestReadFileOnlyRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "x.png")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	noHang(t, "ReadFile of a FIFO", func() {
		if _, err := ReadFile(fifo, nil); !errors.Is(err, ErrNotRegular) {
			t.Errorf("FIFO: %v", err)
		}
		if _, err := ReadSoftware(fifo); !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadSoftware of a FIFO: %v", err)
		}
	})
	for _, dev := range []string{"/dev/zero", "/dev/urandom"} {
		link := filepath.Join(dir, filepath.Base(dev)+".jpg")
		if err := os.Symlink(dev, link); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dev); err != nil {
			continue
		}
		noHang(t, "ReadFile of "+dev, func() {
			if _, err := ReadFile(link, nil); !errors.Is(err, ErrNotRegular) {
				t.Errorf("link to %s: %v", dev, err)
			}
		})
	}
	if _, err := ReadFile(dir, nil); !errors.Is(err, ErrNotRegular) {
		t.Errorf("folder: %v", err)
	}
}

// TestTruncatedProgressiveJPEG cuts a progressive JPEG before its last
// scan and restores the end marker: image/jpeg returns the partial picture
// without error, imageio must call it corrupt. Complete files still decode.
func TestTruncatedProgressiveJPEG(t *testing.T) {
	testdata := filepath.Join(runtime.GOROOT(), "src", "image", "testdata")
	names := []string{"video-001.progressive.jpeg", "video-001.q50.420.progressive.jpeg", "video-001.q50.444.progressive.jpeg",
		"video-001.separate.dc.progression.progressive.jpeg", "video-001.jpeg", "video-001.q50.420.jpeg", "video-001.rgb.jpeg"}
	var prog []byte
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			t.Skipf("Go's image test data missing: %v", err)
		}
		if _, err := Decode(bytes.NewReader(b), nil); err != nil {
			t.Errorf("complete %s: %v", name, err)
		}
		if prog == nil {
			prog = b
		}
	}
	// Every cut at a scan boundary (before an SOS marker) after the first scan.
	var cuts int
	for i := 2; i+1 < len(prog); i++ {
		if prog[i] != 0xff || prog[i+1] != 0xda || bytes.Count(prog[:i], []byte{0xff, 0xda}) == 0 {
			continue
		}
		cut := append(append([]byte{}, prog[:i]...), 0xff, 0xd9)
		if _, err := jpeg.Decode(bytes.NewReader(cut)); err != nil {
			continue // image/jpeg refuses this one itself
		}
		cuts++
		if _, err := Decode(bytes.NewReader(cut), nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("progressive JPEG cut at byte %d of %d: %v, want ErrCorrupt", i, len(prog), err)
		}
	}
	if cuts == 0 {
		t.Fatal("no cut that image/jpeg accepts: the test proves nothing")
	}
	t.Logf("%d truncations accepted by image/jpeg, refused here", cuts)
	if b, err := os.ReadFile(filepath.Join(testdata, "video-001.progressive.truncated.jpeg")); err == nil {
		if _, err := Decode(bytes.NewReader(b), nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Go's truncated progressive test file: %v", err)
		}
	}
}

// TestSoftwareMark: the mark is found again in PNG and JPEG outputs, which
// stay valid for the standard decoders; unmarked files have none.
func TestSoftwareMark(t *testing.T) {
	dir := t.TempDir()
	m := NewImage(5, 3, 3)
	for _, f := range []string{"png", "jpeg"} {
		for _, sw := range []string{"", "tsdsr upscale"} {
			p := filepath.Join(dir, f+sw+".img")
			if err := WriteFile(p, m, &EncodeOptions{Format: f, Software: sw}); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSoftware(p)
			if err != nil || got != sw {
				t.Errorf("%s with %q: read back %q, %v", f, sw, got, err)
			}
			b, _ := os.ReadFile(p)
			var img image.Image
			if f == "png" {
				img, err = png.Decode(bytes.NewReader(b))
			} else {
				img, err = jpeg.Decode(bytes.NewReader(b))
			}
			if err != nil || img.Bounds().Dx() != 5 {
				t.Errorf("%s with %q does not decode: %v", f, sw, err)
			}
		}
	}
}

func TestJPEGSideLimit(t *testing.T) {
	var b bytes.Buffer
	if err := Encode(&b, NewImage(65536, 1, 1), &EncodeOptions{Format: "jpeg"}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("65536-wide JPEG: %v", err)
	}
}
