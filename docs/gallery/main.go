//go:build ignore

// Gallery renders the before/after image of the README: for each input, the
// centre crop of the bicubic x4 upscale next to the same crop of a model's
// x4 output. Run from the repository root:
//
//	go run docs/gallery/main.go -model FILE -o docs/img/gallery.png IMAGES...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"tsdsr/catalog"
	"tsdsr/imageio"
	"tsdsr/sr"
)

func main() {
	model := flag.String("model", "", "student checkpoint or built-in model name")
	out := flag.String("o", "docs/img/gallery.png", "output image")
	crop := flag.Int("crop", 256, "side of the centre crop of each 4x output")
	flag.Parse()
	var up sr.Upscaler
	var err error
	if _, serr := os.Stat(*model); serr == nil {
		up, err = catalog.LoadFile(*model)
	} else {
		up, err = catalog.Load(*model)
	}
	if err != nil {
		fail(err)
	}
	c := *crop
	const gap = 4
	n := flag.NArg()
	g := imageio.NewImage(2*c+gap, n*c+(n-1)*gap, 3)
	for i := range g.Pix {
		g.Pix[i] = 1
	}
	for row, path := range flag.Args() {
		in, err := imageio.ReadFile(path, nil)
		if err != nil {
			fail(err)
		}
		in.Alpha = nil
		for col, u := range []sr.Upscaler{sr.Bicubic{Factor: 4}, up} {
			res, err := sr.New(u, nil).UpscaleImage(context.Background(), in)
			if err != nil {
				fail(err)
			}
			x0, y0 := max(0, (res.Width-c)/2), max(0, (res.Height-c)/2)
			n := res.Width * res.Height
			for ch := 0; ch < 3; ch++ {
				src := res.Pix[min(ch, res.Channels-1)*n:]
				for y := 0; y < c && y0+y < res.Height; y++ {
					for x := 0; x < c && x0+x < res.Width; x++ {
						gy, gx := row*(c+gap)+y, col*(c+gap)+x
						g.Pix[ch*g.Width*g.Height+gy*g.Width+gx] = src[(y0+y)*res.Width+x0+x]
					}
				}
			}
		}
	}
	if err := imageio.WriteFile(*out, g, nil); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gallery:", err)
	os.Exit(1)
}
