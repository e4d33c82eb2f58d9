#!/usr/bin/env bash
# Issue 29's benchmark: at a FLOPs budget, which model and which search? ponder tune over the
# benchmark model (Qwen2.5-Coder-0.5B) and the stronger one (Qwen2.5-Coder-1.5B Q4_K_M): the
# 0.5B's searches, the 1.5B alone, cascades and verify-by-strong (the 1.5B judging the 0.5B's
# answer groups), on the same GSM8K problems as bench/gsm8k_tune.sh (the first 140 of train,
# 100 of them held out by the same seeded split), so the 0.5B's samples are that run's, copied: only the 1.5B's greedy
# answers and votes, and what the choices need on the held-out part, are generated here.
# Budgets (FLOPs-equivalent per problem): the 0.5B's self-consistency@8 (ref@8), about half and
# all of the 1.5B's self-consistency@8 (5.5e12, 1.1e13).
# Resumable: the store is bench/runs/many-minds-gsm8k/samples.sqlite (committed between
# sessions); hours on 2 cores. Run it alone (ggml's threads spin).
#   bash bench/many_minds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python bench/fetch_model.py --model all >/dev/null
OUT=bench/runs/many-minds-gsm8k
if [ ! -f "$OUT/samples.sqlite" ]; then
  mkdir -p "$OUT" && cp bench/runs/gsm8k-tune/samples.sqlite "$OUT/"
fi
exec python -m ponder tune --dataset "${DATA:-../shared/data/gsm8k_train.jsonl}" --limit 140 \
  --holdout 100 --budget ref@8,5.5e12,1.1e13 --samples 1,2,4,8 --temperatures 0.7 \
  --modes chain --no-learn --no-deterministic \
  -m bench/models/qwen2.5-coder-0.5b-instruct.gguf \
  -m strong=bench/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --strong-sizes 1,4,8 \
  --max-tokens 640 --out "$OUT" "$@"
