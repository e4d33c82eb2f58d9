#!/usr/bin/env bash
# Accuracy against compute on GSM8K with the benchmark model (Qwen2.5-Coder-0.5B-Instruct):
# greedy, self-consistency at 1..16 and best-of-n with the self-judge verifier at 1..16.
# Resumable: rerun the same command after an interruption. Copies report.md and scaling.png
# to bench/results/.
#   LIMIT=200 bash bench/gsm8k_scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-200}
OUT=${OUT:-bench/runs/gsm8k-qwen05-$LIMIT}
MODEL=$(python bench/fetch_model.py)
ponder eval --dataset "${DATASET:-../shared/data/gsm8k_train.jsonl}" --limit "$LIMIT" \
  --strategies self-consistency,best-of-n --budgets 1,2,4,8,16 --verifier judge \
  --model "$MODEL" --max-tokens 640 --concurrency 4 -B n_ctx=16384 -B n_seq_max=16 \
  --out "$OUT" "$@"
stamp=$(date +%Y-%m-%d)
cp "$OUT/report.md" "bench/results/gsm8k_scaling-$LIMIT-$stamp.md"
cp "$OUT/scaling.png" "bench/results/gsm8k_scaling-$LIMIT-$stamp.png"
sed -i "s|(scaling.png)|(gsm8k_scaling-$LIMIT-$stamp.png)|" "bench/results/gsm8k_scaling-$LIMIT-$stamp.md"
