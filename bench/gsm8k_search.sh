#!/usr/bin/env bash
# Step-level search on GSM8K with the benchmark model (Qwen2.5-Coder-0.5B-Instruct): beam-search
# (N = 2 and 4 beams, M = 2 next steps each) and mcts (8 and 16 simulations, M = 2), both guided
# by the self-judge step scorer, against self-consistency and best-of-n (self-judge verifier) at
# 1..8 samples, all on the same problems; read accuracy at matched tokens/problem off the report
# and the plot. Shares its folder (and so its self-consistency samples) with gsm8k_program.sh and
# gsm8k_adaptive.sh. Resumable: rerun the same command after an interruption.
#   LIMIT=100 bash bench/gsm8k_search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-100}
OUT=${OUT:-bench/runs/gsm8k-qwen05}
MODEL=$(python bench/fetch_model.py)
ponder eval --dataset "${DATASET:-../shared/data/gsm8k_train.jsonl}" --limit "$LIMIT" \
  --strategies "self-consistency,best-of-n,beam-search[budgets=2/4],mcts[budgets=8/16]" \
  --budgets 1,2,4,8 --verifier judge --model "$MODEL" --max-tokens 640 --concurrency 4 \
  -B n_ctx=16384 -B n_seq_max=16 --out "$OUT" "$@"
stamp=$(date +%Y-%m-%d)
cp "$OUT/report.md" "bench/results/gsm8k_search-$LIMIT-$stamp.md"
cp "$OUT/scaling.png" "bench/results/gsm8k_search-$LIMIT-$stamp.png"
sed -i "s|(scaling.png)|(gsm8k_search-$LIMIT-$stamp.png)|" "bench/results/gsm8k_search-$LIMIT-$stamp.md"
