#!/bin/bash
# The distillation ablation of docs/ablation.md: students at equal budget from
# the shipped prior, each upscaling RealSR and measured with tsdsr eval.
# Run from the repository root; results go to out/ablation/<name>/.
set -u
T=${T:-/tmp/tsdsr}
S=${S:-../shared/data}
GOEXPERIMENT=simd go build -o "$T" ./cmd/tsdsr || exit 1
common="--prior artifacts/prior-192x6/ema.safetensors --data $S/train --full-finetune --batch 2 --size 256 --lr 1e-4 --lr-fake 1e-4 --save-every 100 --seed 7 --quiet"
run() {
  name=$1; shift
  echo "== $name $(date -u +%T) flags: $*"
  start=$(date +%s)
  [ -f out/ablation/$name/student.safetensors ] || "$T" train distill $common --out out/ablation/$name "$@" > out/ablation/$name.stdout 2>&1
  echo "train_s $(( $(date +%s) - start ))"
  start=$(date +%s)
  "$T" upscale --quiet --model out/ablation/$name/student.safetensors -i $S/realsr/LR -o out/ablation/$name/sr
  echo "upscale_s $(( $(date +%s) - start ))"
  "$T" eval --sr out/ablation/$name/sr --gt $S/realsr/HR --json > out/ablation/$name/eval.jsonl
  tail -1 out/ablation/$name/eval.jsonl
}
mkdir -p out/ablation
"$T" eval --baseline bicubic --lr $S/realsr/LR --gt $S/realsr/HR --json | tail -1
run a --steps 200 --warmup 20 --reg none
run b --steps 200 --warmup 20 --reg vsd --dasm=false --w-tsd 10
run c --steps 200 --warmup 20 --reg tsd --dasm=false --w-tsd 10
run d --steps 200 --warmup 20 --reg tsd --w-tsd 10
run e --steps 100 --warmup 10 --reg tsd --w-tsd 10
run f --steps 100 --warmup 10 --reg tsd --w-tsd 5
