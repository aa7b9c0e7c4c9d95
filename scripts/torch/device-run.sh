#!/bin/bash
# One prepared command for a lent GPU: trains the prior with scripts/torch/train_prior.py for at
# most 9 minutes of wall time on one GPU and leaves at most 8 files of at most 16 MiB in $OUT:
#   ema.safetensors (EMA weights, BF16; split into ema-0000k-of-0000n.safetensors shards if over
#   16 MiB, merge with `python3 scripts/torch/st.py merge ema.safetensors ema-*.safetensors`),
#   config.json, metrics.jsonl, train.log, summary.json.
#
# Before: python3 scripts/torch/make_devdata.py (builds the git-ignored devdata/), then
#   run(command="bash scripts/torch/device-run.sh", carry=["devdata"], timeout_s=600)
# Knobs (environment): CONFIG (configs/prior-192x6.json), BATCH (512), LR (4e-4), WARMUP (500),
# EMA (0.999), LOGIT_MEAN (-1.0, the campaign's), SEED (1), INIT (none: from scratch),
# TRAIN_S (420: seconds of training the cosine is fitted to), COMPILE (1).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?OUT must name the result folder}
START=$(date +%s)
RUN=$(mktemp -d /tmp/prior-run.XXXXXX)  # the full checkpoint (~125 MB) stays on the device
LOG=$OUT/train.log
PY=${PYTHON:-python3}
{
  echo "device-run: $(date -u +%FT%TZ), tree $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
  $PY -c 'import numpy; print("numpy", numpy.__version__)'
  $PY -c 'import PIL; print("PIL", PIL.__version__)' 2>/dev/null || $PY -c 'import torchvision; print("no PIL; torchvision", torchvision.__version__)'
} >"$LOG" 2>&1
DATA=${DATA:-devdata}
if [ ! -d "$DATA" ] || [ "$(ls "$DATA" | wc -l)" -lt 10 ]; then
  echo "devdata/ is missing: build it with python3 scripts/torch/make_devdata.py and name it in carry" | tee -a "$LOG"
  exit 2
fi
TRAIN_S=${TRAIN_S:-420}
ARGS=(--out "$RUN" --data "$DATA" --crop 256 --crops-per-photo 2
  --config "${CONFIG:-configs/prior-192x6.json}" --steps 200000 --batch "${BATCH:-512}"
  --lr "${LR:-4e-4}" --warmup "${WARMUP:-500}" --ema "${EMA:-0.999}" --weight-decay 1e-4 --clip 1
  --logit-mean "${LOGIT_MEAN:--1.0}" --logit-std 1 --seed "${SEED:-1}"
  --val-fraction 0.03 --val-n 64 --val-every 2000 --save-every 0 --log-every 100
  --time-budget "$TRAIN_S" --time-limit $((TRAIN_S + 25)))
[ "${COMPILE:-1}" = 1 ] && ARGS+=(--compile)
[ -n "${INIT:-}" ] && ARGS+=(--init "$INIT")
echo "python3 scripts/torch/train_prior.py ${ARGS[*]}" >>"$LOG"
# SIGTERM makes the trainer stop at the next step, evaluate and save: the hard stop at 500 s
# still leaves time to write and copy the results inside 9 minutes.
timeout -s TERM -k 30 $((500 - ($(date +%s) - START))) $PY scripts/torch/train_prior.py "${ARGS[@]}" >>"$LOG" 2>&1
RC=$?
echo "trainer exit $RC after $(($(date +%s) - START)) s" >>"$LOG"
cp "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null
cp "$RUN/config.json" "$OUT/" 2>/dev/null
if [ -f "$RUN/ema.safetensors" ]; then
  if [ "$(stat -c %s "$RUN/ema.safetensors")" -le $((16 << 20)) ]; then
    cp "$RUN/ema.safetensors" "$OUT/"
  else
    (cd scripts/torch && $PY st.py split "$RUN/ema.safetensors" --max-mib 16) >>"$LOG" 2>&1
    mv "$RUN"/ema-*-of-*.safetensors "$OUT/"
  fi
fi
$PY - "$RUN" "$OUT" "$START" <<'EOF' >>"$LOG" 2>&1
import json, os, sys, time
run, out, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))] if os.path.exists(os.path.join(run, "metrics.jsonl")) else []
train = [r for r in rows if "loss" in r]
val = [r for r in rows if "val" in r]
s = {"steps": train[-1]["step"] if train else 0, "wall_s": int(time.time()) - start,
     "samples_per_s_median": sorted(r["samples_per_s"] for r in train)[len(train) // 2] if train else None,
     "last_loss": train[-1]["loss"] if train else None, "val": val[-1] if val else None,
     "files": sorted(os.listdir(out))}
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(s))
EOF
ls -la "$OUT" >>"$LOG"
tail -25 "$LOG"
exit $RC
