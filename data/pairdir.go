package data

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"tsdsr/degrade"
	"tsdsr/imageio"
	"tsdsr/internal/atomicfile"
	"tsdsr/internal/parallel"
)

// PairDir is a directory of synthesised training pairs, as `tsdsr degrade`
// writes it: hr/NNNNNN.png (the sharpened HR crop), lr/NNNNNN.png (the
// degraded image), meta/NNNNNN.json (every sampled parameter) and
// run.json (the settings). Pair k is a pure function of the photos, the
// seed, k and the options, so an interrupted run resumes where it stopped.
type PairDir struct {
	Dir    string
	photos *Photos
	run    pairRun
}

// pairRun is written to run.json; a resumed run must match it, so one
// directory never mixes pairs of different settings.
type pairRun struct {
	Seed    uint64           `json:"seed"`
	Photos  []string         `json:"photos"`
	Options *degrade.Options `json:"options"`
}

// OpenPairDir creates (or reopens) dir for the pairs of photos with seed
// and options o. It writes run.json on the first run and refuses a
// directory made with another seed, photo set or options.
func OpenPairDir(dir string, photos *Photos, seed uint64, o *degrade.Options) (*PairDir, error) {
	d := &PairDir{Dir: dir, photos: photos, run: pairRun{Seed: seed, Options: o}}
	for i := range photos.Len() {
		d.run.Photos = append(d.run.Photos, photos.Name(i))
	}
	for _, k := range []string{"hr", "lr", "meta"} {
		if err := os.MkdirAll(filepath.Join(dir, k), 0o755); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, "run.json")
	want, err := json.MarshalIndent(&d.run, "", "  ")
	if err != nil {
		return nil, err
	}
	want = append(want, '\n')
	have, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return d, atomicfile.WriteBytes(path, want)
	}
	if err != nil {
		return nil, err
	}
	if string(have) != string(want) {
		return nil, fmt.Errorf("%s was made with another seed, photo set or options; use a new --out", path)
	}
	return d, nil
}

// Path is the file of pair k of kind "hr", "lr" or "meta".
func (d *PairDir) Path(kind string, k int) string {
	ext := ".png"
	if kind == "meta" {
		ext = ".json"
	}
	return filepath.Join(d.Dir, kind, fmt.Sprintf("%06d%s", k, ext))
}

// Missing lists the pairs among 0..n-1 not yet complete (without a sidecar).
func (d *PairDir) Missing(n int) []int {
	var todo []int
	for k := range n {
		if _, err := os.Stat(d.Path("meta", k)); err != nil {
			todo = append(todo, k)
		}
	}
	return todo
}

// Write builds and writes the pairs todo with jobs workers, calling done
// (when not nil; from any worker) after each pair. The first failure
// stops the others and is returned; so is ctx's error on cancellation.
func (d *PairDir) Write(ctx context.Context, todo []int, jobs int, done func()) error {
	return parallel.Jobs(ctx, len(todo), jobs, func(i int) error {
		if err := d.writePair(todo[i]); err != nil {
			return err
		}
		if done != nil {
			done()
		}
		return nil
	})
}

// writePair builds pair k and writes HR, LR, then the sidecar: the sidecar
// exists only once both images do, so it marks a complete pair.
func (d *PairDir) writePair(k int) error {
	p, err := d.photos.Pair(d.run.Seed, k, d.run.Options)
	if err != nil {
		return err
	}
	if err := imageio.WriteFile(d.Path("hr", k), p.HR, nil); err != nil {
		return err
	}
	if err := imageio.WriteFile(d.Path("lr", k), p.LR, nil); err != nil {
		return err
	}
	js, err := json.MarshalIndent(p.Params, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(d.Path("meta", k), append(js, '\n'))
}
