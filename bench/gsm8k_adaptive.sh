#!/usr/bin/env bash
# Adaptive compute on GSM8K with the benchmark model (Qwen2.5-Coder-0.5B-Instruct), on the same
# run as self-consistency: adaptive-consistency (replayed on the stored self-consistency samples,
# so it costs nothing extra), deepconf online at max_n=16, and the router with the token budget
# of self-consistency@4 (ROUTER_TOKENS: mean completion tokens of SC@4 in this folder's report).
# Resumable; shares its folder with gsm8k_scaling.sh. Copies the report to bench/results/.
#   LIMIT=300 ROUTER_TOKENS=1146 bash bench/gsm8k_adaptive.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-300}
ROUTER_TOKENS=${ROUTER_TOKENS:-1146}
OUT=${OUT:-bench/runs/gsm8k-qwen05}
MODEL=$(python bench/fetch_model.py)
ponder eval --dataset "${DATASET:-../shared/data/gsm8k_train.jsonl}" --limit "$LIMIT" \
  --strategies "self-consistency,adaptive-consistency[budgets=16],deepconf[budgets=16],router[mean_tokens=$ROUTER_TOKENS]" \
  --budgets 1,2,4,8,16 --model "$MODEL" --max-tokens 640 --concurrency 4 \
  -B n_ctx=16384 -B n_seq_max=16 --out "$OUT" "$@"
stamp=$(date +%Y-%m-%d)
cp "$OUT/report.md" "bench/results/gsm8k_adaptive-$LIMIT-$stamp.md"
cp "$OUT/scaling.png" "bench/results/gsm8k_adaptive-$LIMIT-$stamp.png"
sed -i "s|(scaling.png)|(gsm8k_adaptive-$LIMIT-$stamp.png)|" "bench/results/gsm8k_adaptive-$LIMIT-$stamp.md"
