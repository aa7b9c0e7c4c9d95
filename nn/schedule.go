package nn

import "math"

// Schedule gives the learning rate for a 0-based optimiser step:
//
//	opt.LR = sched(opt.Steps())
//	opt.Step()
//
// The schedules below are diffusers' get_scheduler ones (the multiplier of
// the LambdaLR times the base rate lr), so training recipes carry over.
type Schedule func(step int) float64

// warm is the linear warm-up multiplier step/warmup (0 at step 0, as in
// diffusers), or 1 once warm-up is over.
func warm(step, warmup int) (float64, bool) {
	if step < warmup {
		return float64(step) / float64(max(1, warmup)), true
	}
	return 1, false
}

// Constant holds lr after a linear warm-up of warmup steps (0 for none).
func Constant(lr float64, warmup int) Schedule {
	return func(step int) float64 {
		w, _ := warm(step, warmup)
		return lr * w
	}
}

// progress is the fraction of the post-warm-up steps done, in [0, 1].
func progress(step, warmup, total int) float64 {
	p := float64(step-warmup) / float64(max(1, total-warmup))
	return min(1, max(0, p))
}

// CosineWarmup warms up linearly for warmup steps, then decays lr along
// half a cosine to 0 at step total (and stays at 0 after).
func CosineWarmup(lr float64, warmup, total int) Schedule {
	return func(step int) float64 {
		if w, warming := warm(step, warmup); warming {
			return lr * w
		}
		return lr * 0.5 * (1 + math.Cos(math.Pi*progress(step, warmup, total)))
	}
}

// CosineRestarts warms up linearly, then runs cycles cosine decays from lr to
// 0, each restarting at lr (hard restarts), ending at step total.
func CosineRestarts(lr float64, warmup, total, cycles int) Schedule {
	return func(step int) float64 {
		if w, warming := warm(step, warmup); warming {
			return lr * w
		}
		p := progress(step, warmup, total)
		if p >= 1 {
			return 0
		}
		c := math.Mod(float64(max(1, cycles))*p, 1)
		return lr * 0.5 * (1 + math.Cos(math.Pi*c))
	}
}
