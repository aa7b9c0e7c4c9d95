package train

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"tsdsr/internal/parallel"
	"tsdsr/latents"
	"tsdsr/model/mmdit"
)

// PriorRun describes a prior training run in a directory (`tsdsr train
// prior`): the recipe, the model to train (initialised, and loaded from
// Recipe.Init when there is one) and the latent cache it was checked
// against (Recipe.Model fits its latents).
type PriorRun struct {
	Dir       string
	Seed      uint64
	Resume    bool
	Recipe    PriorRecipe
	Model     *mmdit.Model
	Cache     *latents.Cache
	CacheName string       // the cache's file, for messages
	Options   PriorOptions // SaveEvery, ValSigmas, ValBatch; the recipe sets the rest
	Progress  io.Writer    // progress bar and messages (nil: none)
}

// PriorResult is where a prior run ended.
type PriorResult struct {
	Step    int           // optimiser steps done
	Elapsed time.Duration // training wall time over all sessions
	Val     Scalars       // the last validation row of metrics.jsonl (nil: none)
}

// RunPrior opens (or resumes) the run directory with the recipe, writes
// config.json (the model config LoadPrior reads back), splits the cache
// by Recipe.ValFraction and trains with TrainPrior. On cancellation the
// checkpoint is saved and ctx's error is returned with the result.
func RunPrior(ctx context.Context, o PriorRun) (PriorResult, error) {
	var res PriorResult
	r := o.Recipe
	trainSet, valSet := o.Cache.Split(r.ValFraction)
	if trainSet.Len() == 0 {
		return res, fmt.Errorf("no training latents in %s", o.CacheName)
	}
	run, err := Open(Options{Dir: o.Dir, Seed: o.Seed, Resume: o.Resume, Config: r})
	if err != nil {
		return res, err
	}
	defer run.Close()
	if err := run.WriteJSON("config.json", r.Model); err != nil {
		return res, err
	}
	opt := o.Options
	opt.Steps, opt.Batch, opt.LR, opt.Warmup, opt.WeightDecay, opt.ClipNorm, opt.EMADecay = r.Steps, r.Batch, r.LR, r.Warmup, r.WeightDecay, r.Clip, r.EMA
	opt.LogitMean, opt.LogitStd, opt.EvalEvery, opt.Progress = r.LogitMean, r.LogitStd, r.ValEvery, o.Progress
	val := valSet.First(r.ValN)
	if valSet.Len() == 0 {
		val = nil
	}
	params := o.Model.Params
	run.Log.Info("prior", "params", params.Count(), "train_latents", trainSet.Len(), "val_latents", valSet.Len(),
		"threads", parallel.Threads())
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "prior: %d parameters, %d training / %d held-out latents of %dx%d, run in %s\n",
			params.Count(), trainSet.Len(), valSet.Len(), o.Cache.Latents.Shape[2], o.Cache.Latents.Shape[3], o.Dir)
	}
	err = TrainPrior(ctx, run, o.Model.Velocity, params, trainSet, val, opt)
	res.Step, res.Elapsed = run.Step(), run.Elapsed()
	if err != nil {
		return res, err
	}
	rows, _ := ReadLog(filepath.Join(o.Dir, "metrics.jsonl"))
	for i := len(rows) - 1; i >= 0 && res.Val == nil; i-- {
		if _, ok := rows[i]["val"]; ok {
			res.Val = rows[i]
		}
	}
	return res, nil
}
