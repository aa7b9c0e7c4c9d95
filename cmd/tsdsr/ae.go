package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"tsdsr/imageio"
	"tsdsr/model/taesd"
	"tsdsr/tensor"
)

func init() {
	register(&command{name: "ae", summary: "TAESD3 autoencoder: encode, decode or round-trip images (latent-space checks)", run: runAE})
}

const aeUsage = `Usage: tsdsr ae encode|decode|roundtrip -i IN -o OUT

  encode     image -> raw SD3 latent (.safetensors: tensor "latent" [1,16,h,w])
  decode     latent (.safetensors) -> PNG image
  roundtrip  image -> latent -> image, written under the input's file name:
             a quick visual check of the latent space

IN and OUT are both files, or both folders (every image or latent in IN).
Images of any size are padded to multiples of 8 and cropped back.
`

func runAE(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, aeUsage)
		return errUsage
	}
	mode := args[0]
	if mode != "encode" && mode != "decode" && mode != "roundtrip" {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n\n%s", mode, aeUsage)
		return errUsage
	}
	fs := newFlagSet("ae "+mode, aeUsage)
	in := fs.String("i", "", "input file or folder")
	out := fs.String("o", "", "output file or folder")
	tile := fs.Int("tile", taesd.DefaultDecodeTiling.Tile, "tile size in latent pixels (bounded memory for big images)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		fs.Usage()
		return errUsage
	}
	enc, dec, err := taesd.Embedded()
	if err != nil {
		return err
	}
	encT, decT := taesd.DefaultEncodeTiling, taesd.DefaultDecodeTiling
	encT.Tile, decT.Tile = *tile, *tile

	outExt := map[string]string{"encode": ".safetensors", "decode": ".png", "roundtrip": ".png"}[mode]
	one := func(src, dst string) error {
		var z *tensor.Tensor
		h, w := 0, 0
		if mode == "decode" {
			var err error
			if z, w, h, err = taesd.LoadLatent(src); err != nil {
				return err
			}
		} else {
			m, err := imageio.ReadFile(src, nil)
			if err != nil {
				return err
			}
			h, w = m.Height, m.Width
			x := tensor.FromData(m.RGB(), 1, 3, m.Height, m.Width) // alpha is not part of the latent space
			if z, err = enc.EncodeTiled(ctx, taesd.PadToFactor(x), encT); err != nil {
				return err
			}
			if mode == "encode" {
				return taesd.SaveLatent(dst, z, w, h, src)
			}
		}
		y, err := dec.DecodeTiled(ctx, z, decT)
		if err != nil {
			return err
		}
		y = taesd.Crop(y, h, w)
		img := &imageio.Image{Width: w, Height: h, Channels: 3, Pix: y.Data, BitDepth: 8}
		return imageio.WriteFile(dst, img, &imageio.EncodeOptions{Format: "png"})
	}

	st, err := os.Stat(*in)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if *out == *in {
			return fmt.Errorf("refusing to overwrite the input %s", *in)
		}
		return one(*in, *out)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(*in)
	if err != nil {
		return err
	}
	failed := 0
	for _, e := range entries {
		name := e.Name()
		isLatent := strings.HasSuffix(name, ".safetensors")
		if e.IsDir() || isLatent != (mode == "decode") {
			continue
		}
		dst := filepath.Join(*out, strings.TrimSuffix(name, filepath.Ext(name))+outExt)
		if filepath.Clean(dst) == filepath.Clean(filepath.Join(*in, name)) {
			fmt.Fprintf(os.Stderr, "%s: skipped: output would overwrite the input\n", name)
			failed++
			continue
		}
		if err := one(filepath.Join(*in, name), dst); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d file(s) failed", failed)
	}
	return nil
}
