package latents

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"tsdsr/data"
	"tsdsr/model/taesd"
)

// Open loads the latent cache at path, or, when the file does not exist,
// builds it from the photos in dataDir with the embedded TAESD3 encoder,
// saves it there and loads the saved file. progress, when not nil, gets a
// progress bar and a summary line of the build.
func Open(ctx context.Context, path, dataDir string, o BuildOptions, progress io.Writer) (*Cache, error) {
	if _, err := os.Stat(path); err == nil {
		return Load(path)
	}
	if dataDir == "" {
		return nil, fmt.Errorf("latent cache %s does not exist: give --data DIR to build it", path)
	}
	photos, err := data.OpenDir(dataDir, 256<<20)
	if err != nil {
		return nil, err
	}
	enc, _, err := taesd.Embedded()
	if err != nil {
		return nil, err
	}
	if progress != nil {
		bar := progressbar.NewOptions(photos.Len()*o.PerPhoto, progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("encoding crops"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(25),
			progressbar.OptionThrottle(200*time.Millisecond))
		o.Progress = func(done, total int) {
			bar.ChangeMax(total)
			bar.Set(done)
		}
		defer fmt.Fprintln(progress)
	}
	t0 := time.Now()
	c, err := Build(ctx, photos, dataDir, enc, o)
	if err != nil {
		return nil, err
	}
	if err := c.Save(path); err != nil {
		return nil, err
	}
	if progress != nil {
		fmt.Fprintf(progress, "\nencoded %d crops of %d photos in %s into %s\n", len(c.Photo), len(c.Photos)-len(c.Skipped),
			time.Since(t0).Round(time.Second), path)
	}
	// Train on the file's (half-precision) values, not the encoder's: a run
	// resumed later reads the file, and must see the same bits.
	return Load(path)
}
