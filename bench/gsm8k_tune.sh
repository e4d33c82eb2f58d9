#!/usr/bin/env bash
# Issue 19's protocol: ponder tune on GSM8K train with the benchmark model. The first 140 problems,
# 100 of them held out (a seeded split); every setting is generated on the 40 tuning problems,
# each as far as self-consistency@8's token cost (ref@8) affords (cheap ones up to 32 samples);
# the best configuration at that cost is chosen there, and only
# it and the reference are generated on the 100 held-out problems and compared, paired.
# Resumable: the store is bench/runs/gsm8k-tune/samples.sqlite (committed between sessions).
#   bash bench/gsm8k_tune.sh      (hours on 2 cores; rerun to resume)
set -euo pipefail
cd "$(dirname "$0")/.."
python bench/fetch_model.py >/dev/null
exec python -m ponder tune --dataset "${DATA:-../shared/data/gsm8k_train.jsonl}" --limit 140 \
  --holdout 100 --budget ref@8 --samples 1,2,4,8,16,32 --temperatures 0.7 \
  --modes chain,program,mixed --shots 0,4 --examples bench/gsm8k_exemplars.jsonl \
  -m bench/models/qwen2.5-coder-0.5b-instruct.gguf --max-tokens 640 \
  --out bench/runs/gsm8k-tune "$@"
