package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tsdsr/degrade"
	"tsdsr/distill"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/train"
)

func init() {
	registerTrainer("distill", "TSD-SR one-step student by target score distillation from a prior", runTrainDistill)
}

const trainDistillUsage = "Usage: tsdsr train distill --prior DIR|FILE --data DIR --out DIR [--resume] [flags]\n" +
	"\nDistils the prior into a one-step super-resolution student by Target Score Distillation\n" +
	"(TSD-SR): z_hat = z_L - G(z_L, t=1000) on TAESD3 latents of bicubic-upsampled LR crops,\n" +
	"L = w_mse MSE(z_hat, z_H) + w_pix pixel + w_tsd L_TSD, with a fake score trained online.\n" +
	"HR/LR pairs stream from --data through the Real-ESRGAN degradation (--size HR -> size/4 LR),\n" +
	"or a mixture of degradations (--degrade, repeated): a share of milder pairs keeps fidelity\n" +
	"on camera captures, which the Real-ESRGAN model alone teaches the student to oversmooth.\n" +
	"\nAblations: --reg none (MSE only), --reg vsd (lambda 1), --reg tsd --dasm=false, --reg tsd (default).\n" +
	"The pixel loss (--w-pix) is a Charbonnier (smooth L1) distance on TAESD3-decoded output, a\n" +
	"stand-in for TSD-SR's LPIPS, whose ImageNet backbone is not available. --w-adv adds, beyond\n" +
	"the paper, a hinge GAN loss from a patch discriminator trained against the HR latents, or\n" +
	"with --adv-space pixel against the HR crops on the decoded output.\n" +
	"\n--prior is a run directory of `tsdsr train prior` (EMA weights when present), a diffusers\n" +
	"directory (config.json + diffusion_pytorch_model.safetensors) or a safetensors file with its\n" +
	"config in the metadata or a config.json beside it. --init starts the student from an earlier\n" +
	"student (two-stage training: --reg none first, then score distillation from it).\n" +
	"\nOUT gets student.safetensors (merged weights, config in the metadata: what the upscaler\n" +
	"loads), checkpoints/, state.json, metrics.jsonl, loss.csv, loss.png and train.log. Ctrl-C saves\n" +
	"a checkpoint; --resume continues bit for bit.\n\n"

// runTrainDistill is `tsdsr train distill`: TSD-SR's one-step student
// distilled from a prior (see package distill).
func runTrainDistill(ctx context.Context, args []string) error {
	fs := newFlagSet("train distill", trainDistillUsage)
	def := distill.DefaultConfig()
	prior := fs.String("prior", "", "`path` of the prior: run directory, diffusers directory or safetensors file (see above)")
	initFrom := fs.String("init", "", "start the student from this `student.safetensors` (e.g. a --reg none run) instead of the prior")
	dataDir := fs.String("data", "", "directory of HR photos")
	steps := fs.Int("steps", 2000, "student steps (each followed by one fake-score step)")
	batch := fs.Int("batch", 2, "pairs per step")
	size := fs.Int("size", 256, "HR crop side (LR is size/4; latents size/8)")
	lr := fs.Float64("lr", def.LR, "student peak learning rate (cosine decay after warm-up; the paper's SD3 value is 5e-6)")
	lrFake := fs.Float64("lr-fake", def.LRFake, "fake-score peak learning rate (the paper's SD3 value is 1e-6)")
	warmup := fs.Int("warmup", def.Warmup, "linear warm-up steps of both learning rates")
	loraRank := fs.Int("lora-rank", def.LoRARank, "student LoRA rank (alpha = rank)")
	fakeRank := fs.Int("fake-rank", def.FakeRank, "fake-score LoRA rank (attention projections)")
	full := fs.Bool("full-finetune", false, "train every student weight instead of a LoRA")
	reg := fs.String("reg", def.Reg, "score regulariser: none, vsd or tsd")
	lambda := fs.Float64("lambda", def.Lambda, "VSD share of the TSD gradient (--reg tsd)")
	dasm := fs.Bool("dasm", def.DASM, "distribution-aware sampling: accumulate the gradient along Euler trajectories")
	dasmSteps := fs.Int("dasm-steps", def.DASMSteps, "DASM trajectory length (weights 1, 0.3, 0.3, ...)")
	wMSE := fs.Float64("w-mse", def.WMSE, "weight of the latent MSE")
	wTSD := fs.Float64("w-tsd", def.WTSD, "weight of L_TSD")
	ema := fs.Float64("ema", def.EMA, "EMA decay of the student's weights, saved as student.safetensors (0: none, the last weights)")
	wPix := fs.Float64("w-pix", def.WPix, "weight of the pixel loss (Charbonnier on TAESD3-decoded output; 0: off)")
	wSSIM := fs.Float64("w-ssim", 0, "weight of 1 - SSIM on the luma of the TAESD3-decoded output against the HR crop (beyond the paper; 0: off)")
	wGrid := fs.Float64("w-grid", 0, "weight of the decoded output's 16-pixel grid (metrics' grid, squared; beyond the paper; 0: off)")
	wAdv := fs.Float64("w-adv", 0, "weight of the adversarial loss against a patch discriminator (beyond the paper; 0: off)")
	lrDisc := fs.Float64("lr-disc", 1e-4, "discriminator peak learning rate (with --w-adv)")
	advSpace := fs.String("adv-space", distill.AdvLatent, "what the discriminator sees (with --w-adv): latent (TAESD3 latents) or pixel (the decoded output against the HR crop)")
	advShift := fs.Int("adv-shift", -1, "crop the discriminator's inputs at a random offset in [0, N) per step, in its input's units, so that its patch grid does not teach the student a grid (with --w-adv; -1: its patch, 16 pixels or 4 latent pixels; 0: off, as runs before session 6)")
	seed := fs.Uint64("seed", 0, "seed of the adapters, the data stream and the noise")
	var specs []string
	fs.Func("degrade", "degradation `FILE[:WEIGHT]` (tsdsr degrade --config JSON, or "+degrade.DefaultName+
		" for Real-ESRGAN's); repeat it for a mixture, each pair drawing one in proportion to WEIGHT (default: "+degrade.DefaultName+" alone)",
		func(v string) error { specs = append(specs, v); return nil })
	var rd runFlags
	rd.register(fs, 100)
	snapshotEvery := fs.Int("snapshot-every", 0, "write OUT/students/step-N.safetensors (BF16; the EMA with --ema) every N steps, to choose a checkpoint on held-out pairs (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *prior == "" || *dataDir == "" || rd.out == "" || *steps <= 0 || *batch <= 0 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *size <= 0 || *size%(4*taesd.Factor) != 0 {
		return fmt.Errorf("--size %d: must be a positive multiple of %d (4x LR, 8x latents)", *size, 4*taesd.Factor)
	}
	var mix degrade.Mixture
	for _, v := range specs {
		c, err := degrade.ParseComponent(v)
		if err != nil {
			return fmt.Errorf("--degrade: %w", err)
		}
		mix = append(mix, c)
	}
	progress := rd.start()
	cfg := distill.Config{LoRARank: *loraRank, FakeRank: *fakeRank, FullFinetune: *full, Reg: *reg, Lambda: *lambda,
		DASM: *dasm, DASMSteps: *dasmSteps, WMSE: *wMSE, WTSD: *wTSD, WPix: *wPix, LR: *lr, LRFake: *lrFake,
		Warmup: *warmup, Steps: *steps, WeightDecay: def.WeightDecay, ClipNorm: def.ClipNorm, Seed: *seed, EMA: *ema, WSSIM: *wSSIM, WGrid: *wGrid}
	if *wAdv > 0 {
		cfg.WAdv, cfg.LRDisc = *wAdv, *lrDisc
		if *advSpace != distill.AdvLatent { // "" keeps earlier latent runs' recipes resumable
			cfg.AdvSpace = *advSpace
		}
		cfg.AdvShift = *advShift
		if cfg.AdvShift == -1 {
			cfg.AdvShift = distill.DiscPatch(cfg.AdvSpace)
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	model, _, err := train.LoadPrior(*prior, "ema")
	if err != nil {
		return fmt.Errorf("prior: %w", err)
	}
	mc := model.Config
	if lat := *size / taesd.Factor; !mc.Fits(lat) {
		return fmt.Errorf("--size %d gives %dx%d latents, which do not fit patch %d and position grid %d", *size, lat, lat, mc.PatchSize, mc.PosEmbedMaxSize)
	}
	if mc.ContextTokens == 0 {
		return errors.New("prior: the model has no learned prompt (context_tokens = 0)")
	}
	var start *mmdit.Model
	if *initFrom != "" {
		if start, err = mmdit.LoadFile(*initFrom); err != nil {
			return fmt.Errorf("--init: %w", err)
		}
	}
	res, err := distill.Run(ctx, distill.RunOptions{Config: cfg, Prior: model, Start: start, Init: *initFrom, PriorName: *prior,
		DataDir: *dataDir, Degrade: mix, Dir: rd.out, Batch: *batch, Size: *size, Steps: *steps, SaveEvery: rd.saveEvery, SnapshotEvery: *snapshotEvery, Resume: rd.resume, Progress: progress})
	if err != nil {
		return err
	}
	if res.Interrupted {
		return fmt.Errorf("interrupted: checkpoint saved at step %d in %s (student of that step in %s); continue with --resume", res.Step, rd.out, res.Student)
	}
	if progress != nil {
		fmt.Fprintf(progress, "done: %d steps in %s of training; student in %s\n", res.Step, res.Elapsed.Round(time.Second), res.Student)
	}
	return nil
}
