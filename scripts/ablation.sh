#!/bin/bash
# The distillation ablation of docs/ablation.md: students at equal budget from
# the shipped prior, each upscaling RealSR and measured with tsdsr eval.
# Run from the repository root; results go to out/ablation/<name>/.
set -u
T=${T:-/tmp/tsdsr}
S=${S:-../shared/data}
GOEXPERIMENT=simd go build -o "$T" ./cmd/tsdsr || exit 1
# The first prior's weights left the tree in session 2 of the quality
# campaign (superseded as teacher by prior4); git history keeps them.
P1=out/prior-192x6.safetensors
[ -f $P1 ] || { mkdir -p out; git show 4a2fb18:artifacts/prior-192x6/ema.safetensors > $P1; }
common="--prior $P1 --data $S/train --full-finetune --batch 2 --size 256 --lr 1e-4 --lr-fake 1e-4 --save-every 100 --seed 7 --quiet"
# run NAME FLAGS...: train the student out/ablation/NAME (unless done), upscale RealSR, evaluate.
# A --prior among FLAGS overrides the common one (the flag parser keeps the last).
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

# Second round (docs/ablation.md): better teachers, two-stage training, the pixel loss.
# The continued prior's weights left the tree (superseded); git history keeps them.
P2=out/prior-192x6-cont.safetensors
[ -f $P2 ] || { mkdir -p out; git show e90116f:artifacts/prior-192x6-cont/ema.safetensors > $P2; }
P3=out/prior-192x6-cont2.safetensors
[ -f $P3 ] || git show e90116f:artifacts/prior-192x6-cont2/ema.safetensors > $P3
A=out/ablation/a/student.safetensors
short="--steps 100 --warmup 10 --save-every 25"
run e2 --prior $P2 $short --reg tsd --w-tsd 10
run g --init $A $short --reg tsd --w-tsd 10
run h --prior $P2 --init $A $short --reg tsd --w-tsd 10
run i --prior $P3 --init $A $short --reg tsd --w-tsd 30
run j --init $A $short --reg tsd --w-tsd 30
run k $short --reg tsd --w-tsd 10 --w-pix 1
run l $short --reg none --w-pix 1
for alpha in 0.5 0.55 0.6; do
  m=out/ablation/ge$alpha.safetensors
  [ -f $m ] || "$T" interp --a out/ablation/g/student.safetensors --b out/ablation/e/student.safetensors --alpha $alpha -o $m
  "$T" upscale --quiet --model $m -i $S/realsr/LR -o out/ablation/ge$alpha-sr
  "$T" eval --sr out/ablation/ge$alpha-sr --gt $S/realsr/HR --json | tail -1
done
