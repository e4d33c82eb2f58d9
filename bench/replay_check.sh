#!/usr/bin/env bash
# Scores the committed 5-problem GSM8K run (bench/runs/gsm8k-5-check, written before the core
# layer was refactored) again with today's code, generating nothing, and diffs the report's
# table with the committed one: a change to how ponder replays, votes or scores shows up here.
#   bash bench/replay_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=bench/runs/gsm8k-5-check
MODEL=$(python bench/fetch_model.py)  # the store is keyed by the model's sha256
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$RUN/samples.sqlite" "$tmp/"
ponder eval --dataset "${DATASET:-../shared/data/gsm8k_train.jsonl}" --limit 5 \
  --strategies "self-consistency,best-of-n[budgets=1/2/4],adaptive-consistency[budgets=16],self-consistency[mode=mixed,budgets=2/4]" \
  --budgets 1,2,4,8,16 --model "$MODEL" --max-tokens 640 --concurrency 1 \
  -B n_ctx=16384 -B n_seq_max=16 --out "$tmp" > /dev/null
# the results table, row by row; columns added since the run was committed (FLOPs/problem) and
# the sections after the table (paired comparisons, notes) are left out of the comparison
table() {
  python - "$1" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith("| strategy | budget |"))
head = [c.strip() for c in lines[start].strip("|").split("|")]
keep = [i for i, c in enumerate(head) if c != "FLOPs/problem"]
for line in lines[start:]:
    if not line.startswith("|"):
        break
    cells = [c.strip() for c in line.strip("|").split("|")]
    print(" | ".join(cells[i] for i in keep if i < len(cells)))
PY
}
diff <(table "$RUN/report.md") <(table "$tmp/report.md")
echo "identical: every accuracy, interval and cost in $RUN/report.md"
