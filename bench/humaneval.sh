#!/usr/bin/env bash
# Code reasoning on HumanEval with the benchmark model (Qwen2.5-Coder-0.5B-Instruct): greedy
# pass@1, self-consistency with execution-based voting at 1..8, best-of-n with the visible-test
# verifier (code-tests) at 1..8 (both from one pool of samples), and self-debug with up to 3
# rounds. Resumable. Copies report.md and scaling.png to bench/results/.
#   LIMIT=40 bash bench/humaneval.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-40}
OUT=${OUT:-bench/runs/humaneval-qwen05-$LIMIT}
MODEL=$(python bench/fetch_model.py)
ponder eval --dataset humaneval --limit "$LIMIT" \
  --strategies self-consistency,best-of-n,self-debug --budgets 1,2,4,8 --verifier code-tests \
  --model "$MODEL" --max-tokens 640 --concurrency 4 -B n_ctx=16384 -B n_seq_max=16 \
  --out "$OUT" "$@"
stamp=$(date +%Y-%m-%d)
cp "$OUT/report.md" "bench/results/humaneval-$LIMIT-$stamp.md"
cp "$OUT/scaling.png" "bench/results/humaneval-$LIMIT-$stamp.png"
sed -i "s|(scaling.png)|(humaneval-$LIMIT-$stamp.png)|" "bench/results/humaneval-$LIMIT-$stamp.md"
