#!/usr/bin/env bash
# What distillation buys: on a fixed slice of GSM8K train problems, the benchmark model
# (Qwen2.5-Coder-0.5B-Instruct) samples 16 chains per problem once (`ponder eval`); then
# `python bench/distill_coverage.py bench/runs/$NAME` counts the problems with at least one
# verified (gold-correct) trace at N = 1, 4, 8, 16 samples and runs the distillation on it.
# Resumable: rerun the same command after an interruption (the samples are stored as they come
# in bench/runs/$NAME/; more problems: LIMIT=24 with NAME=distill-gsm8k-12 extends the run).
#   flock /tmp/ponder-cpu.lock timeout 1200 bash bench/distill_coverage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-12}
NAME=${NAME:-distill-gsm8k-$LIMIT}
OUT=bench/runs/$NAME
MODEL=bench/models/qwen2.5-coder-0.5b-instruct.gguf
python -m ponder eval --dataset "${DATASET:-/work/shared/data/gsm8k_train.jsonl}" \
  --limit "$LIMIT" --strategies self-consistency --budgets 1,4,8,16 --no-greedy \
  --model "$MODEL" --max-tokens 640 --concurrency 2 -B n_ctx=16384 -B n_seq_max=16 \
  --out "$OUT" "$@"
