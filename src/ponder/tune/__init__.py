"""``ponder tune``: find the best way to spend a token budget on a model and a task, on a dev set
with gold answers, and prove it on the part of it the choice never saw."""
