"""What each lever buys: how a configuration differs from the reference, lever by lever, and
the best configuration within a budget that changes one lever alone (optimistic: the best of
several on the same problems, uncorrected)."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.tune.budgets import best_at, fits_in
from ponder.tune.space import LEARNED, Candidate


def levers_of(c: Candidate, reference: Candidate) -> tuple[str, ...]:
    """How a configuration differs from the reference, lever by lever (the strong model alone
    is one lever, and verify-by-strong one; a cascade is its small side's levers and the
    cascade)."""
    if c.kind == "strong":
        return ("the strong model alone",)
    if c.kind == "verify":  # the reference setting's samples, the strong model choosing
        return ("the strong model verifies",)
    mine, ref = c.setting.options, reference.setting.options
    out = []
    if mine.get("temperature") != ref.get("temperature"):
        out.append("temperature")
    for knob, name in (("top_p", "top-p"), ("min_p", "min-p"), ("template", "template")):
        if mine.get(knob) != ref.get(knob):
            out.append(name)
    if mine.get("mode", "chain") != ref.get("mode", "chain"):
        out.append(f"{mine.get('mode', 'chain')} mode")
    if mine.get("shots", 0) != ref.get("shots", 0):
        out.append("few-shot")
    if c.selector == LEARNED:
        out.append("learned selector")
    elif c.selector != reference.selector:
        out.append("weighted vote")
    if c.kind == "cascade":
        out.append("cascade to the strong model")
    return tuple(out)


def levers(candidates: Sequence[Candidate], reference: Candidate, budget: int | float
           ) -> list[tuple[str, Candidate]]:
    """What each lever buys at a budget: for every lever, the most accurate configuration
    within the budget that differs from the reference by that lever alone (any sample count
    that fits; on ties the reference's, then fewer tokens); then the best of all (any levers
    together). Each is the best of several on the same problems: optimistic, uncorrected."""
    fits = [c for c in candidates if fits_in(c, budget)]
    alone: dict[str, Candidate] = {}

    def rank(c: Candidate) -> tuple[float, bool, float]:
        return (round(c.accuracy, 12), c.n == reference.n, -c.cost)

    for c in fits:
        changed = levers_of(c, reference)
        if len(changed) == 1 and (changed[0] not in alone or rank(c) > rank(alone[changed[0]])):
            alone[changed[0]] = c
    out = sorted(alone.items(), key=lambda kv: -kv[1].accuracy)
    overall = best_at(fits, budget)
    if overall is not None:
        changed = " + ".join(levers_of(overall, reference))
        out.append((f"all together (best of all): {changed}" if changed
                    else "none: the reference is the best of all", overall))
    return out
