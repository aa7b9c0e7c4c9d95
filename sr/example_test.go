package sr_test

import (
	"context"
	"fmt"
	"image"
	"image/color"

	"tsdsr/sr"
)

// A Go program embeds the upscaler through the standard image types; gray,
// 16-bit and alpha survive the trip.
func ExampleNew() {
	img := image.NewGray(image.Rect(0, 0, 8, 6))
	img.SetGray(3, 2, color.Gray{Y: 200})

	p := sr.New(sr.Bicubic{}, &sr.Options{OutScale: 2, ColorFix: sr.ColorFixWavelet})
	out, err := p.Upscale(context.Background(), img)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%dx%d %T\n", out.Bounds().Dx(), out.Bounds().Dy(), out)
	// Output: 16x12 *image.Gray
}
