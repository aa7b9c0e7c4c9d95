package data

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"tsdsr/degrade"
	"tsdsr/internal/parallel"
	"tsdsr/rng"
)

// Config configures a Loader. Zero fields take the defaults noted.
type Config struct {
	Batch    int              // pairs per batch (default 4)
	Workers  int              // goroutines building batches (default parallel.Threads())
	Prefetch int              // batches built ahead of the trainer (default 2*Workers)
	Seed     uint64           // stream seed
	Start    int              // index of the first batch (to resume a run)
	Options  *degrade.Options // nil: degrade.DefaultOptions()
	// Mixture, when not empty, replaces Options: each pair draws its
	// degradation model from it, by a stream of its own (so the choice
	// does not shift the pair's photo, crop or degradation draws).
	Mixture degrade.Mixture
}

// mixtureSeed separates the mixture's choices from the pairs' own draws.
const mixtureSeed = 0x3c6ef372fe94f82b

// Batch is N pairs as NCHW float32 arrays, three channels, values in
// [0, 1] (LRUp, a bicubic upsampling, may overshoot slightly).
type Batch struct {
	Index  int                  // batch number in the stream
	N      int                  // pairs
	Size   int                  // HR side; LR side is Size/Scale
	Scale  int                  //
	HR     []float32            // [N, 3, Size, Size], USM-sharpened ground truth
	LR     []float32            // [N, 3, Size/Scale, Size/Scale], 8-bit levels
	LRUp   []float32            // [N, 3, Size, Size], LR upsampled (PyTorch bicubic)
	Params []degrade.PairParams // sidecars
}

// Loader produces batches in order: batch b holds pairs b*Batch ...
// (b+1)*Batch-1 of the stream, whichever worker built it. Memory is bounded
// by Prefetch+Workers batches. Next is for one consumer goroutine.
type Loader struct {
	ctx    context.Context
	cancel context.CancelFunc
	order  chan chan result // per-batch result slots, in batch order
	wg     sync.WaitGroup
}

type result struct {
	b   *Batch
	err error
}

type job struct {
	index int
	out   chan result
}

// NewLoader starts the workers; they stop when ctx is cancelled or Close
// is called.
func NewLoader(ctx context.Context, photos *Photos, cfg Config) (*Loader, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 4
	}
	if cfg.Workers <= 0 {
		cfg.Workers = parallel.Threads()
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 2 * cfg.Workers
	}
	if len(cfg.Mixture) > 0 {
		if err := cfg.Mixture.Validate(); err != nil {
			return nil, err
		}
		cfg.Options = cfg.Mixture[0].Options
	}
	if cfg.Options == nil {
		cfg.Options = degrade.DefaultOptions()
	}
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	if cfg.Start < 0 {
		return nil, fmt.Errorf("data: negative start batch %d", cfg.Start)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Loader{ctx: ctx, cancel: cancel, order: make(chan chan result, cfg.Prefetch)}
	jobs := make(chan job)
	l.wg.Add(1 + cfg.Workers)
	go func() { // dispatcher: reserves an ordered slot, then hands out the job
		defer l.wg.Done()
		defer close(jobs)
		for b := cfg.Start; ; b++ {
			out := make(chan result, 1)
			select {
			case l.order <- out:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{b, out}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range cfg.Workers {
		go func() {
			defer l.wg.Done()
			for j := range jobs {
				b, err := buildBatch(ctx, photos, &cfg, j.index)
				j.out <- result{b, err}
			}
		}()
	}
	return l, nil
}

// Next returns the next batch in order, waiting for it if needed. After
// cancellation it returns the context's error.
func (l *Loader) Next() (*Batch, error) {
	if err := l.ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case out := <-l.order:
		select {
		case r := <-out:
			return r.b, r.err
		case <-l.ctx.Done():
			return nil, l.ctx.Err()
		}
	case <-l.ctx.Done():
		return nil, l.ctx.Err()
	}
}

// Close stops the workers and waits for them to return.
func (l *Loader) Close() {
	l.cancel()
	l.wg.Wait()
}

// buildBatch synthesises batch b on the calling goroutine.
func buildBatch(ctx context.Context, photos *Photos, cfg *Config, b int) (*Batch, error) {
	o := cfg.Options
	s, lr := o.Crop.Size, o.Crop.Size/o.Scale
	n := cfg.Batch
	bt := &Batch{Index: b, N: n, Size: s, Scale: o.Scale,
		HR: make([]float32, 0, n*3*s*s), LR: make([]float32, 0, n*3*lr*lr), LRUp: make([]float32, 0, n*3*s*s)}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k, o, model := b*n+i, o, ""
		if len(cfg.Mixture) > 0 {
			c := cfg.Mixture[cfg.Mixture.Choose(rng.New(cfg.Seed^mixtureSeed).Child(uint64(k)).Float64())]
			o, model = c.Options, c.Name
		}
		p, err := photos.Pair(cfg.Seed, k, o)
		if err != nil {
			return nil, err
		}
		p.Params.Model = model
		if p.HR.Channels != 3 || p.LR.Width != lr || p.LR.Height != lr {
			return nil, errors.New("data: pair has an unexpected shape")
		}
		bt.HR = append(bt.HR, p.HR.Pix...)
		bt.LR = append(bt.LR, p.LR.Pix...)
		bt.LRUp = append(bt.LRUp, p.LRUp.Pix...)
		bt.Params = append(bt.Params, p.Params)
	}
	return bt, nil
}
