#!/usr/bin/env bash
# Issue 29: each many-minds strategy run for real on two models, the bundled SmolLM2-135M as the
# generator and the benchmark model (Qwen2.5-Coder-0.5B, `python bench/fetch_model.py`) as the
# strong one, on the first GSM8K train problems: cascade (escalating below 3 of 4 agreeing),
# verify-by-strong (the 0.5B judging the 135M's answer groups), mixture-of-agents (both propose,
# the 0.5B aggregates), debate (one agent each, one round) and particle-filtering (the 135M's
# steps judged by the 0.5B), beside the 135M's greedy answer and self-consistency@4. The report
# (bench/runs/many-minds-strategies/report.md) gives accuracy, tokens, FLOPs and seconds per
# model; `ponder view bench/runs/many-minds-strategies --problem ID --strategy debate` draws a
# run. Resumable; run it alone (ggml's threads spin).
#   bash bench/many_minds_strategies.sh            # LIMIT=20 problems
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=$(python -c "from ponder.backends.models import bundled_model_path as p; print(p())")
STRONG=$(python bench/fetch_model.py)
exec python -m ponder eval --dataset "${DATA:-../shared/data/gsm8k_train.jsonl}" \
  --limit "${LIMIT:-20}" --budgets 4 --max-tokens 640 --seed 0 \
  --strategies 'self-consistency,cascade[threshold=0.75],verify-by-strong,mixture-of-agents[proposers=["generator","strong"],layers=1,aggregator=strong,budgets=1],debate[agents=2,agent_roles=["generator","strong"],budgets=1],particle-filtering[scorer_role=strong]' \
  -m "$SMALL" -m "strong=$STRONG" --out bench/runs/many-minds-strategies "$@"
