"""``ponder tune``'s reports: tune.md, tune.html (self-contained), pareto.png and tune.json.

With a strong model (``data["axis"] == "flops"``) every cost is FLOPs-equivalent per problem, the
tables add which model(s) a configuration runs, its generated tokens per model and, for a
cascade, its threshold, strong side and escalated share; the plot's x axis is FLOPs (log)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

NOTE = (
    "Accuracy and tokens on the tuning part are each configuration's expected accuracy over "
    "subsets of the stored samples (the learned selector's by cross-validation: each problem "
    "scored by a selector fitted without it). The reference is self-consistency by majority at "
    "the reference setting with as many samples as fit the budget. Differences are paired "
    "(bootstrap 95% CI over problems, exact sign test); the held-out columns use only problems "
    "the choice never saw. Only the chosen configurations and their references (with a strong "
    "model, also each budget's best single-model configuration and the anchors) are generated "
    "on the held-out part, each up to the sample count it uses (and scored on those first "
    "samples); the other configurations have no held-out samples, so they have no held-out "
    "numbers."
)


def _ceiling_cells(parts: dict[str, float | None]) -> str:
    """``55.0% tuning, 52.0% held-out`` (the parts that have a ceiling)."""
    cells = [f"{_pct(parts[key])} {where}" for key, where in
             (("tuning", "tuning"), ("held_out", "held-out")) if parts.get(key) is not None]
    return ", ".join(cells) or "n/a"


def ceiling_lines(data: dict[str, Any]) -> list[str]:
    """Per budget, how far the choice is from a perfect pick of the same samples."""
    out = []
    for c in data["choices"]:
        top = c.get("ceiling")
        if not top:
            continue
        same = top["chosen"] == top["reference"]
        out.append(f"Ceiling at {budget_cell(c)}: a right answer is among the samples the "
                   f"choice votes over for {_ceiling_cells(top['chosen'])} problems (pass@n, "
                   "what a perfect pick would reach)"
                   + ("; the reference votes over the same samples." if same
                      else f"; the reference's: {_ceiling_cells(top['reference'])}."))
    return out


def held_out_line(data: dict[str, Any]) -> str:
    """What was generated on the held-out part."""
    made = data.get("held_out_generated") or []
    if not made:
        return "Held-out part: nothing generated (no configuration fit a budget)."
    most: dict[str, int] = {}
    for m in made:  # one draw per setting, up to the largest count any choice uses
        most[m["setting"]] = max(most.get(m["setting"], 0), m["n"])
    line = "Held-out part: generated " + ", ".join(f"{s} (n={n})" for s, n in most.items()) \
        + "; nothing else."
    if data.get("partial"):
        line = (f"Partial: interrupted while generating the held-out part; the confirmation "
                f"covers the held-out problems generated so far (the column 'held-out "
                f"problems'), of {len(data['held_out_ids'])}. Rerun the same command to finish "
                "it (and to write the presets). " + line)
    return line


MIX_NOTE = (
    "Costs are FLOPs-equivalent per problem: 2 x parameters x every token read or written, "
    "summed over the models, each call's prompt read once (k samples of one call: its prompt "
    "and k samples' mean tokens). A cascade votes with the small model; when the "
    "leading answer's share of the vote (agreement) is below its threshold, the strong model "
    "answers (greedy, or a majority of its samples at the reference temperature); 'escalated' "
    "is the expected share of problems sent to it, and its cost counts the strong model only "
    "for those. The strong model alone runs with `-m BIG` as the generator; a cascade's preset "
    "with `-m SMALL -m strong=BIG`."
)


def by_flops(data: dict[str, Any]) -> bool:
    """Whether the run compares configurations by FLOPs (a strong model was given)."""
    return data.get("axis") == "flops"


def flops_cell(x: float | None) -> str:
    """``2.45e11``, ``9.6e3``, ``120``: three significant digits."""
    if x is None or math.isnan(x):
        return "—"
    mantissa, _, exponent = f"{x:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def cost_cell(data: dict[str, Any], c: dict[str, Any]) -> str:
    """A configuration's cost as the run compares it: tokens, or FLOPs."""
    return flops_cell(c.get("flops")) if by_flops(data) else f"{c['tokens']:.0f}"


def unit(data: dict[str, Any]) -> str:
    return "FLOPs" if by_flops(data) else "tokens"


def tokens_cell(c: dict[str, Any]) -> str:
    """Generated tokens per problem, per model: ``112 small / 40 strong``."""
    by = c.get("tokens_by_model") or {"small": c["tokens"]}
    return " / ".join(f"{v:.0f} {k}" for k, v in by.items())


def mix_cells(c: dict[str, Any]) -> list[str]:
    """Models, threshold, strong side and escalated share of a configuration."""
    cascade = c.get("kind") == "cascade"
    side = {"strong": c.get("strong"), "cascade": c.get("strong"),
            "verify": "weighs the votes" if c.get("selector") == "weighted"
            else "judges the groups"}.get(c.get("kind", "small"), "—")
    return [c.get("models", "small"), f"{c['threshold']:g}" if cascade else "—", side or "—",
            _pct(c["escalation"]) if cascade else "—"]


def _pct(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _pts(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{round(100 * x, 1) + 0.0:+.1f}"  # no -0.0


def budget_cell(choice: dict[str, Any]) -> str:
    """``1234`` or ``1234 (ref@8)``; FLOPs as ``2e12``."""
    spec = choice.get("budget_spec") or ""
    budget = choice["budget"]
    shown = flops_cell(budget) if isinstance(budget, float) else str(budget)
    return f"{shown} ({spec})" if spec.startswith("ref@") else shown


CUT_SHARE = 0.1  # more samples than this cut short by the token limit: warned about


def beats_reference(choice: dict[str, Any]) -> bool:
    """Whether the configuration chosen at a budget is more accurate than the reference on the
    tuning part (the choice is the most accurate one, so at worst it ties the reference)."""
    return round(choice["chosen"]["accuracy"], 12) > round(choice["reference"]["accuracy"], 12)


def verdict_lines(data: dict[str, Any]) -> list[str]:
    """Per budget where no configuration is more accurate than the reference, that plainly,
    and what the preset written there is."""
    out = []
    for c in data["choices"]:
        if c["chosen"] is None or beats_reference(c):
            continue
        ref, best = c["reference"], c["chosen"]
        line = (f"At {budget_cell(c)} {unit(data)} nothing beats the reference: {ref['label']} "
                f"scores {_pct(ref['accuracy'])} on the tuning part and no configuration more")
        if best["label"] == ref["label"]:
            line += "; the preset written is the reference itself."
        else:
            line += (f"; the preset written, {best['label']}, only matches it, at "
                     f"{cost_cell(data, best)} {unit(data)} against {cost_cell(data, ref)}.")
        out.append(line)
    return out


def _diff_cell(c: dict[str, Any]) -> str:
    """``+4.0 [+1.0, +8.0] p=0.125`` of a paired comparison."""
    return (f"{_pts(c['difference'])} [{_pts(c['ci_low'])}, {_pts(c['ci_high'])}] "
            f"p={c['p_value']:.3g}")


def single_lines(data: dict[str, Any]) -> list[str]:
    """Per budget (with a strong model), the choice against the most accurate configuration
    of one model alone there, on the held-out part: whether the choice is compute-optimal."""
    out = []
    for c in data["choices"]:
        single = c.get("single")
        if c["chosen"] is None or single is None:
            continue
        where = f"At {budget_cell(c)} FLOPs"
        if single["label"] == c["chosen"]["label"]:
            out.append(f"{where} the choice is a single model's own configuration "
                       f"({single['label']}): no mix beats it on the tuning part.")
            continue
        held, h_single = c.get("single_held_out"), c.get("held_out_single")
        line = (f"{where} the best single model is {single['label']} "
                f"({_pct(single['accuracy'])} on the tuning part, {flops_cell(single['flops'])} "
                f"FLOPs)")
        if held is None or h_single is None or not c.get("held_out_chosen"):
            out.append(line + "; not confirmed on the held-out part.")
            continue
        mine = c["held_out_chosen"]["accuracy"]
        verdict = ("at least as accurate" if round(held["difference"], 12) >= 0
                   else "less accurate")
        out.append(f"{line}; held out, the choice is {verdict}: {_pct(mine)} against "
                   f"{_pct(h_single['accuracy'])}, {_diff_cell(held)} "
                   f"({held['problems']} problems, paired; {held['verdict']}).")
    return out


def mix_lines(data: dict[str, Any]) -> list[str]:
    """Per budget (with a strong model), the most accurate mix there against the best single
    model, on both parts, whether it was chosen or not."""
    out = []
    for c in data["choices"]:
        mix, single = c.get("mix"), c.get("single")
        if not mix or not single or c["chosen"] is None:
            continue
        m, tuning = mix["configuration"], mix["against_tuning"]
        how = f", escalating {_pct(m['escalation'])}" if m.get("kind") == "cascade" else ""
        line = (f"At {budget_cell(c)} FLOPs the best mix is {m['label']} "
                f"({_pct(m['accuracy'])} on the tuning part, {flops_cell(m['flops'])} FLOPs{how})"
                f": against the best single model {single['label']}, "
                f"{_pts(tuning['difference'])} points on the tuning part")
        held, h_mix = mix.get("against_held_out"), mix.get("held_out")
        h_single = mix.get("held_out_against")
        if held and h_mix and h_single:
            line += (f", held out {_pct(h_mix['accuracy'])} against "
                     f"{_pct(h_single['accuracy'])}, {_diff_cell(held)} ({held['problems']} "
                     f"problems, paired; {held['verdict']})")
        else:
            line += "; not confirmed on the held-out part"
        out.append(line + ".")
    return out


ANCHOR_HEADER = ["anchor", "models", "FLOPs/problem (held-out)", "tuning accuracy",
                 "held-out accuracy"]
AGAINST_HEADER = ["budget (FLOPs)", "chosen", "anchor", "FLOPs, chosen / anchor (held-out)",
                  "held-out accuracy", "held-out difference (points)"]
ANCHOR_NOTE = (
    "Anchors are confirmed on the held-out part whatever the choices are: the strong model "
    "alone (greedy, and self-consistency at each --strong-sizes count above one), the small "
    "model's self-consistency at each ref@N budget's N and the small model's own best "
    "configuration at each budget (what tune chooses without a strong model). Each choice is "
    "paired against each anchor on the same held-out problems; the cost ratio says whether it "
    "spends at most half of what an anchor spends."
)


def anchor_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in data.get("anchors") or []:
        t, h = a["tuning"], a.get("held_out")
        rows.append([t["label"], t.get("models", "small"), flops_cell(h["flops"]) if h else "—",
                     _pct(t["accuracy"]), _pct(h["accuracy"]) if h else "—"])
    return rows


def against_rows(data: dict[str, Any]) -> list[list[str]]:
    """Each choice against each anchor, paired on the held-out part, with the cost ratio."""
    held = {c["chosen"]["label"]: c["held_out_chosen"] for c in data["choices"]
            if c["chosen"] is not None and c.get("held_out_chosen")}
    rows = []
    for c in data["choices"]:
        mine = held.get(c["chosen"]["label"]) if c["chosen"] is not None else None
        if mine is None:
            continue
        for a in data.get("anchors") or []:
            h = a.get("held_out")
            cmp = next((x["held_out"] for x in a["choices"] if x["budget"] == c["budget"]),
                       None)
            if h is None or cmp is None or a["tuning"]["label"] == c["chosen"]["label"]:
                continue
            ratio = mine["flops"] / h["flops"] if mine.get("flops") and h.get("flops") else None
            rows.append([budget_cell(c), c["chosen"]["label"], a["tuning"]["label"],
                         "—" if ratio is None else f"{ratio:.2f}",
                         f"{_pct(mine['accuracy'])} vs {_pct(h['accuracy'])}", _diff_cell(cmp)])
    return rows


def cut_line(data: dict[str, Any], flag: str = "--max-tokens") -> str | None:
    """A warning when more than a tenth of the samples were cut short by the token limit."""
    cut = data.get("samples_cut") or {}
    samples, k = cut.get("samples") or 0, cut.get("cut") or 0
    if not samples or k / samples <= CUT_SHARE:
        return None
    return (f"{k} of {samples} samples ({100 * k / samples:.0f}%) hit the token limit of "
            f"{cut.get('max_tokens')} new tokens and were cut short: their answers are missing, "
            f"so every accuracy here is lower than the model's; raise {flag}.")


def choice_rows(data: dict[str, Any]) -> list[list[str]]:
    flops = by_flops(data)
    rows = []
    for c in data["choices"]:
        if c["chosen"] is None:
            rows.append([budget_cell(c), c["why"], *["—"] * (len(header(data)) - 2)])
            continue
        t, h = c["tuning"], c.get("held_out")
        hc, hr = c.get("held_out_chosen"), c.get("held_out_reference")
        chosen = c["chosen"]["label"] if beats_reference(c) else \
            f"nothing beats the reference (preset: {c['chosen']['label']})"
        costs = [cost_cell(data, c["chosen"])]
        if flops:
            costs = [*mix_cells(c["chosen"])[::3], costs[0], tokens_cell(c["chosen"])]
        rows.append([
            budget_cell(c), chosen, *costs,
            c["reference"]["label"],
            f"{_pct(c['chosen']['accuracy'])} vs {_pct(c['reference']['accuracy'])}",
            f"{_pts(t['difference'])} [{_pts(t['ci_low'])}, {_pts(t['ci_high'])}]",
            f"{_pct(hc['accuracy'])} vs {_pct(hr['accuracy'])}" if hc and hr else "—",
            f"{_pts(h['difference'])} [{_pts(h['ci_low'])}, {_pts(h['ci_high'])}] "
            f"p={h['p_value']:.3g}" if h else "—",
            str(h["problems"]) if h else "0",
        ])
    return rows


HEADER = ["budget (tokens)", "chosen", "tokens", "reference", "tuning accuracy",
          "tuning difference (points)", "held-out accuracy", "held-out difference (points)",
          "held-out problems"]
FLOPS_HEADER = ["budget (FLOPs)", "chosen", "models", "escalated", "FLOPs",
                "tokens per model", *HEADER[3:]]


def header(data: dict[str, Any]) -> list[str]:
    """The choice table's columns: by tokens, or (a strong model given) by FLOPs."""
    return FLOPS_HEADER if by_flops(data) else HEADER


LEVER_NOTE = (
    "Each lever alone (the most accurate configuration within the budget that differs from the "
    "reference by that lever only, at any sample count that fits), then all of them together, "
    "paired against the reference on the tuning problems. Each row is the best of several "
    "configurations picked on these same problems, so its difference is optimistic and its p "
    "uncorrected; only the chosen configuration is confirmed on the held-out part."
)

LEVER_HEADER = ["budget (tokens)", "lever", "configuration", "tokens", "accuracy",
                "difference (points)", "p"]


def lever_header(data: dict[str, Any]) -> list[str]:
    if not by_flops(data):
        return LEVER_HEADER
    return ["budget (FLOPs)", *LEVER_HEADER[1:3], "FLOPs", *LEVER_HEADER[4:]]


def lever_rows(data: dict[str, Any]) -> list[list[str]]:
    """What each lever bought on the tuning part, paired against the reference (the last row
    of a budget: the best configuration, its levers together)."""
    rows = []
    for c in data["choices"]:
        for row in c.get("levers", []):
            t, conf = row["tuning"], row["configuration"]
            rows.append([budget_cell(c), row["lever"], conf["label"], cost_cell(data, conf),
                         f"{_pct(conf['accuracy'])} vs {_pct(c['reference']['accuracy'])}",
                         f"{_pts(t['difference'])} [{_pts(t['ci_low'])}, {_pts(t['ci_high'])}]",
                         f"{t['p_value']:.3g}"])
    return rows


FRONT_HEADER = ["configuration", "accuracy", "tokens/problem"]
MIX_FRONT_HEADER = ["configuration", "models", "threshold", "strong side", "escalated",
                    "accuracy", "FLOPs/problem", "tokens per model"]


def front_rows(data: dict[str, Any], labels: list[str] | None = None) -> list[list[str]]:
    """The Pareto front's configurations (or ``labels``'), cheapest first."""
    by_label = {c["label"]: c for c in data["candidates"]}
    rows = []
    for label in data["front"] if labels is None else labels:
        c = by_label[label]
        if by_flops(data):
            rows.append([label, *mix_cells(c), _pct(c["accuracy"]), flops_cell(c["flops"]),
                         tokens_cell(c)])
        else:
            rows.append([label, _pct(c["accuracy"]), f"{c['tokens']:.0f}"])
    return rows


def strong_labels(data: dict[str, Any]) -> list[str]:
    """The strong model alone, every way it was tried."""
    return [c["label"] for c in data["candidates"] if c.get("kind") == "strong"]


def models_line(config: dict[str, Any]) -> str:
    """``Model `small.gguf``` or ``Small model `a`, strong model `b```, with their sizes."""
    if not config.get("strong_model"):
        return f"Model `{config['model']}`"
    sizes = config.get("parameters") or {}
    return (f"Small model `{config['model']}` ({flops_cell(sizes.get('small'))} parameters), "
            f"strong model `{config['strong_model']}` "
            f"({flops_cell(sizes.get('strong'))} parameters)")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]]


def markdown(data: dict[str, Any], config: dict[str, Any]) -> str:
    columns = header(data)
    lines = [f"# ponder tune: {config['dataset']}", "",
             f"{models_line(config)}, {len(data['tuning_ids'])} tuning problems, "
             f"{len(data['held_out_ids'])} held-out problems, seed {config['seed']}.", "",
             "## Chosen per budget", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |"
              for r in choice_rows(data)]
    warning = cut_line(data)
    if warning:
        lines += ["", f"**Warning:** {warning}"]
    for line in verdict_lines(data) + single_lines(data) + mix_lines(data) + ceiling_lines(data):
        lines += ["", line]
    if data.get("anchors"):
        lines += ["", "## Anchors: one model alone, confirmed on the held-out part", "",
                  ANCHOR_NOTE, "", *_table(ANCHOR_HEADER, anchor_rows(data))]
        against = against_rows(data)
        if against:
            lines += ["", "### Each choice against each anchor (held-out part, paired)", "",
                      *_table(AGAINST_HEADER, against)]
    levers = lever_rows(data)
    if levers:
        lines += ["", "## What each lever bought (tuning part)", "", LEVER_NOTE, "",
                  "| " + " | ".join(lever_header(data)) + " |",
                  "|" + "---|" * len(LEVER_HEADER)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |"
                  for r in levers]
    lines += ["", NOTE, *(["", MIX_NOTE] if by_flops(data) else []), "", held_out_line(data),
              "", f"![accuracy against {unit(data)}](pareto.png)", "",
              "## Pareto front (tuning part)", ""]
    if by_flops(data):
        lines += _table(MIX_FRONT_HEADER, front_rows(data))
        lines += ["", "## The strong model alone (tuning part)", "",
                  *_table(MIX_FRONT_HEADER, front_rows(data, strong_labels(data)))]
    else:
        lines += ["| configuration | accuracy | tokens/problem |", "|---|---:|---:|"]
        by_label = {c["label"]: c for c in data["candidates"]}
        lines += [f"| {label} | {_pct(by_label[label]['accuracy'])} | "
                  f"{by_label[label]['tokens']:.0f} |" for label in data["front"]]
    cv = data.get("selector_cv") or {}
    if cv and cv.get("learned") is None:
        lines += ["", "## Learned selector", "",
                  "Not fitted: the tuning part's samples hold no right answer group (or no wrong "
                  "one) to learn from; the learned rule is the majority vote."]
    elif cv:
        lines += ["", "## Learned selector", "",
                  f"Logistic regression on answer-group features, {cv['folds']}-fold "
                  f"cross-validation by problem over {cv['decisions']} decisions: picks the right "
                  f"group {_pct(cv.get('learned'))} of the time, the majority "
                  f"{_pct(cv.get('majority'))}. Coefficients: `{data['selector_file']}`."]
    lines += ["", "Presets: " + ", ".join(f"`{p}`" for p in config.get("presets", [])), ""]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    key = "flops" if by_flops(data) else "tokens"
    cands = [c for c in data["candidates"] if c.get(key) is not None]
    ax.scatter([c[key] for c in cands], [c["accuracy"] for c in cands], s=12,
               color="#bbbbbb", label="configurations (tuning part)")
    if by_flops(data):  # the strong model alone and the cascades, apart from the small model's
        for kind, color, name, marker in (
                ("cascade", "#9ecae1", "cascades", "o"),
                ("verify", "#9467bd", "verify-by-strong", "^"),
                ("strong", "#2ca02c", "the strong model alone", "D")):
            some = [c for c in cands if c.get("kind") == kind]
            if some:
                ax.scatter([c[key] for c in some], [c["accuracy"] for c in some],
                           s=14 if kind == "cascade" else 40, color=color, marker=marker,
                           label=f"{name} (tuning part)", zorder=2)
        # each model's scaling curve: self-consistency by majority at the reference setting
        reference = (data.get("settings") or [{}])[0].get("label")
        curves = (
            ([c for c in cands if c.get("kind", "small") == "small" and c["selector"] ==
              "majority" and c["setting"] == reference], "#ff7f0e",
             "small model, self-consistency (tuning part)"),
            ([c for c in cands if c.get("kind") == "strong" and c.get("strong") != "greedy"],
             "#2ca02c", "strong model, self-consistency (tuning part)"))
        for curve, color, name in curves:
            curve = sorted(curve, key=lambda c: c[key])
            if len(curve) > 1:
                ax.plot([c[key] for c in curve], [c["accuracy"] for c in curve], "--",
                        color=color, linewidth=1, label=name, zorder=1)
        anchors = [a["held_out"] for a in data.get("anchors") or []
                   if a.get("held_out") and a["held_out"].get(key) is not None]
        if anchors:  # the single models confirmed on the held-out part
            ax.scatter([a[key] for a in anchors], [a["accuracy"] for a in anchors], marker="D",
                       s=40, facecolors="none", linewidths=1.2, zorder=3,
                       edgecolors=["#2ca02c" if a.get("kind") == "strong" else "#ff7f0e"
                                   for a in anchors], label="anchors, held-out part")
        ax.set_xscale("log")  # ticks as 1e4, not mathtext (whose fonts may be missing)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: flops_cell(x)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    by_label = {c["label"]: c for c in cands}
    front = [by_label[label] for label in data["front"]]
    ax.plot([c[key] for c in front], [c["accuracy"] for c in front], "-o", color="#1f77b4",
            markersize=4, label="Pareto front")
    refs = [c["reference"] for c in data["choices"] if c["chosen"]]
    ax.scatter([r[key] for r in refs], [r["accuracy"] for r in refs], marker="s", s=50,
               color="#ff7f0e", label="reference (self-consistency, majority)", zorder=3)
    chosen: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for c in data["choices"]:
        ax.axvline(c["budget"], color="#999999", linestyle=":", linewidth=1)
        if c["chosen"]:
            chosen.setdefault(c["chosen"]["label"], (c["chosen"], []))[1].append(c["budget"])
    right = max([c[key] for c in cands], default=0.0)
    least = min([c[key] for c in cands], default=0.0)
    for k, (label, (ch, budgets)) in enumerate(chosen.items()):  # one mark each, its budgets
        ax.scatter([ch[key]], [ch["accuracy"]], marker="*", s=180, color="#d62728",
                   zorder=4)
        # near the right edge: written to its left (on a log axis, by the exponent)
        left = (math.log(ch[key] / least) > 0.6 * math.log(right / least)
                if key == "flops" and least > 0 and right > least else ch[key] > 0.6 * right)
        shown = [flops_cell(b) if key == "flops" else str(b) for b in budgets]
        ax.annotate(f"{', '.join(shown)}: {label}", (ch[key], ch["accuracy"]),
                    textcoords="offset points",  # staggered: neighbours' labels apart
                    xytext=(-8 if left else 6, 6 - 14 * k if k % 2 else 6 + 14 * k),
                    ha="right" if left else "left", fontsize=7,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none",
                          "alpha": 0.8}, zorder=5)
    ax.margins(y=0.1)
    ax.scatter([], [], marker="*", s=120, color="#d62728", label="chosen per budget")
    held = [c for c in data["choices"] if c.get("held_out_chosen")]
    if held:  # the confirmation: the same two configurations on the held-out part
        ax.scatter([c["held_out_reference"][key] for c in held],
                   [c["held_out_reference"]["accuracy"] for c in held], marker="s", s=50,
                   facecolors="none", edgecolors="#ff7f0e", linewidths=1.5, zorder=3,
                   label="reference, held-out part")
        ax.scatter([c["held_out_chosen"][key] for c in held],
                   [c["held_out_chosen"]["accuracy"] for c in held], marker="*", s=180,
                   facecolors="none", edgecolors="#d62728", linewidths=1.2, zorder=4,
                   label="chosen, held-out part")
    ax.set_xlabel("FLOPs-equivalent per problem (mean, log scale)" if key == "flops"
                  else "generated tokens per problem (mean)")
    ax.set_ylabel("accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(f"ponder tune: accuracy against {unit(data)} (budgets dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def html_page(data: dict[str, Any], config: dict[str, Any], png: Path) -> str:
    levers = lever_rows(data)
    lever_table = "" if not levers else (
        "<h2>What each lever bought (tuning part)</h2><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in lever_header(data)) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                  for row in levers)
        + f"</table><p>{html.escape(LEVER_NOTE)}</p>")
    image = base64.b64encode(png.read_bytes()).decode()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header(data))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in choice_rows(data))
    flops = by_flops(data)
    front_head = MIX_FRONT_HEADER if flops else ["configuration", "accuracy", "tokens/problem"]

    def grid(head: list[str], rows: list[list[str]]) -> str:
        return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
                          + "</tr>" for row in rows) + "</table>")

    def table(rows: list[list[str]]) -> str:
        return grid(front_head, rows)

    against = against_rows(data)
    anchors = "" if not data.get("anchors") else (
        "<h2>Anchors: one model alone, confirmed on the held-out part</h2>"
        f"<p>{html.escape(ANCHOR_NOTE)}</p>" + grid(ANCHOR_HEADER, anchor_rows(data))
        + ("<h3>Each choice against each anchor (held-out part, paired)</h3>"
           + grid(AGAINST_HEADER, against) if against else ""))
    strong = ("<h2>The strong model alone (tuning part)</h2>"
              + table(front_rows(data, strong_labels(data)))) if flops else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>ponder tune: {html.escape(config['dataset'])}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "img{max-width:100%}"
        "</style></head><body>"
        f"<h1>ponder tune</h1><p>{html.escape(config['dataset'])} · "
        f"{html.escape(models_line(config).replace('`', ''))} · {len(data['tuning_ids'])} tuning, "
        f"{len(data['held_out_ids'])} held-out problems</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        + "".join(f"<p><b>Warning:</b> {html.escape(line)}</p>"
                  for line in [cut_line(data)] if line)
        + "".join(f"<p>{html.escape(line)}</p>"
                  for line in verdict_lines(data) + single_lines(data) + mix_lines(data)
                  + ceiling_lines(data))
        + anchors + f"{lever_table}<p>{html.escape(NOTE)}</p>"
        + (f"<p>{html.escape(MIX_NOTE)}</p>" if flops else "")
        + f"<p>{html.escape(held_out_line(data))}</p>"
        f"<img alt='accuracy against {unit(data)}' src='data:image/png;base64,{image}'>"
        f"<h2>Pareto front (tuning part)</h2>{table(front_rows(data))}{strong}</body></html>\n")


def write_reports(out: Path, data: dict[str, Any], config: dict[str, Any]) -> list[Path]:
    png = out / "pareto.png"
    plot(data, png)
    md, page, js = out / "tune.md", out / "tune.html", out / "tune.json"
    md.write_text(markdown(data, config))
    page.write_text(html_page(data, config, png))
    js.write_text(json.dumps({"config": config, **data}, indent=2, default=str) + "\n")
    return [md, png, page, js]
