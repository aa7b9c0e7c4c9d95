//go:build ignore

// Gallery renders the before/after image of the README: one row per input,
// one column per model (a crop of each model's x4 output, bicubic first),
// and optionally a column of reference outputs read from a folder (OSEDiff's,
// matched by base name; blank where the folder has none). Run from the
// repository root:
//
//	go run docs/gallery/main.go -models bicubic,tsdsr-small-v2,new.safetensors \
//	    -ref ../shared/data/realsr/osediff -o docs/img/gallery.png IMAGE[@X,Y]...
//
// A crop is centred unless @X,Y gives its top-left corner in output pixels.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"tsdsr/catalog"
	"tsdsr/imageio"
	"tsdsr/sr"
)

func main() {
	models := flag.String("models", "bicubic,tsdsr-small-v2", "comma-separated built-in model names or student checkpoints, one column each")
	ref := flag.String("ref", "", "folder of reference x4 outputs (e.g. OSEDiff's), matched by base name: the last column")
	out := flag.String("o", "docs/img/gallery.png", "output image")
	crop := flag.Int("crop", 256, "side of each crop of the 4x outputs")
	flag.Parse()
	var ups []sr.Upscaler
	for _, m := range strings.Split(*models, ",") {
		var up sr.Upscaler
		var err error
		if _, serr := os.Stat(m); serr == nil {
			up, err = catalog.LoadFile(m)
		} else {
			up, err = catalog.Load(m)
		}
		if err != nil {
			fail(err)
		}
		ups = append(ups, up)
	}
	cols := len(ups)
	if *ref != "" {
		cols++
	}
	c, gap := *crop, 8
	rows := flag.NArg()
	g := imageio.NewImage(cols*c+(cols-1)*gap, rows*c+(rows-1)*gap, 3)
	for i := range g.Pix {
		g.Pix[i] = 1
	}
	for row, arg := range flag.Args() {
		path, at, _ := strings.Cut(arg, "@")
		in, err := imageio.ReadFile(path, nil)
		if err != nil {
			fail(err)
		}
		in.Alpha = nil
		x0, y0 := -1, -1
		if at != "" {
			xs, ys, _ := strings.Cut(at, ",")
			if x0, err = strconv.Atoi(xs); err == nil {
				y0, err = strconv.Atoi(ys)
			}
			if err != nil {
				fail(fmt.Errorf("%s: want IMAGE@X,Y", arg))
			}
		}
		var results []*imageio.Image
		for _, u := range ups {
			res, err := sr.New(u, nil).UpscaleImage(context.Background(), in)
			if err != nil {
				fail(err)
			}
			results = append(results, res)
		}
		if *ref != "" {
			base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			matches, _ := filepath.Glob(filepath.Join(*ref, base+".*"))
			var res *imageio.Image
			if len(matches) > 0 {
				if res, err = imageio.ReadFile(matches[0], nil); err != nil {
					fail(err)
				}
			}
			results = append(results, res) // nil: a blank cell
		}
		for col, res := range results {
			if res != nil {
				paste(g, res, row*(c+gap), col*(c+gap), x0, y0, c)
			}
		}
	}
	if err := imageio.WriteFile(*out, g, nil); err != nil {
		fail(err)
	}
}

// paste copies the c x c crop of res at (x0, y0) (centred when negative)
// into g at row offset gy0 and column offset gx0.
func paste(g, res *imageio.Image, gy0, gx0, x0, y0, c int) {
	if x0 < 0 || y0 < 0 {
		x0, y0 = max(0, (res.Width-c)/2), max(0, (res.Height-c)/2)
	}
	n := res.Width * res.Height
	for ch := 0; ch < 3; ch++ {
		src := res.Pix[min(ch, res.Channels-1)*n:]
		for y := 0; y < c && y0+y < res.Height; y++ {
			for x := 0; x < c && x0+x < res.Width; x++ {
				g.Pix[ch*g.Width*g.Height+(gy0+y)*g.Width+gx0+x] = src[(y0+y)*res.Width+x0+x]
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gallery:", err)
	os.Exit(1)
}
