#!/usr/bin/env bash
# Tool-integrated reasoning on GSM8K with the benchmark model (Qwen2.5-Coder-0.5B-Instruct):
# program-of-thought at 1..8, self-consistency (chains) at 1..8, and mixed voting (half chains,
# half programs, agreement across modes x1.5) at 2..8 — the mixed vote replays on the chain and
# program samples the other two generated, so it costs nothing extra. Resumable; shares its
# folder (and chain samples) with gsm8k_scaling.sh. Copies the report to bench/results/.
#   LIMIT=200 bash bench/gsm8k_program.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-200}
OUT=${OUT:-bench/runs/gsm8k-qwen05}
MODEL=$(python bench/fetch_model.py)
ponder eval --dataset "${DATASET:-../shared/data/gsm8k_train.jsonl}" --limit "$LIMIT" \
  --strategies "self-consistency,program-of-thought,self-consistency[mode=mixed]" \
  --budgets 1,2,4,8 --model "$MODEL" --max-tokens 640 --concurrency 4 \
  -B n_ctx=16384 -B n_seq_max=16 --out "$OUT" "$@"
stamp=$(date +%Y-%m-%d)
cp "$OUT/report.md" "bench/results/gsm8k_program-$LIMIT-$stamp.md"
cp "$OUT/scaling.png" "bench/results/gsm8k_program-$LIMIT-$stamp.png"
sed -i "s|(scaling.png)|(gsm8k_program-$LIMIT-$stamp.png)|" "bench/results/gsm8k_program-$LIMIT-$stamp.md"
