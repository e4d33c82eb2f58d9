"""Reports of an evaluation: report.md, scaling.png, report.html (self-contained), report.json."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from ponder.backends.endpoints import shown_urls
from ponder.eval.harness import GREEDY
from ponder.eval.traces import write_problem_pages


def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def has_flops(data: dict[str, Any]) -> bool:
    """Whether the run knows its FLOPs-equivalent cost (every model's size is known)."""
    return any(p.get("flops") is not None for p in data["points"] + data["coverage"])


def has_dollars(data: dict[str, Any]) -> bool:
    """Whether the run knows its cost in dollars (the operator priced every model)."""
    return any(p.get("dollars") is not None for p in data["points"] + data["coverage"])


def _flops(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _dollars(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def table_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    flops, dollars = has_flops(data), has_dollars(data)
    for p in data["points"] + data["coverage"]:
        rows.append([
            p["strategy"], str(p["budget"]), _pct(p["accuracy"]),
            f"{_pct(p['ci_low'])} – {_pct(p['ci_high'])}", f"{p['tokens']:.0f}",
            *([_flops(p.get("flops"))] if flops else []),
            *([_dollars(p.get("dollars"))] if dollars else []),
            f"{p['calls']:.2f}" if not p["strategy"].startswith("coverage") else "—",
            f"{p['seconds']:.1f}" if not p["strategy"].startswith("coverage") else "—",
            str(p["problems"]),
        ])
    return rows


HEADER = ["strategy", "budget", "accuracy", "95% CI", "tokens/problem", "calls/problem",
          "seconds/problem", "problems"]


def header(data: dict[str, Any]) -> list[str]:
    """The table's columns: FLOPs and dollars per problem beside the tokens where the run knows
    them."""
    return (HEADER[:5] + ["FLOPs/problem"] * has_flops(data) + ["$/problem"] * has_dollars(data)
            + HEADER[5:])

PAIRED_HEADER = ["strategy@budget", "reference", "problems", "difference (points)",
                 "paired 95% CI", "p-value", "verdict"]

PAIRED_NOTE = (
    "Paired comparisons use only the problems both were scored on. The difference is the mean "
    "over problems of the strategy's expected accuracy minus the reference's, in percentage "
    "points; the interval is a paired bootstrap (problems resampled, both strategies kept "
    "together); the p-value is an exact two-sided sign test on the per-problem differences, ties "
    "dropped (exact McNemar on right/wrong outcomes). \"better\" or \"worse\" needs p < 0.05 "
    "and the mean difference pointing the same way as most problems that differ."
)


def _points(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:+.1f}"


def _p(x: float) -> str:
    return "< 0.0001" if x < 1e-4 else f"{x:.4f}"


def paired_rows(data: dict[str, Any]) -> list[list[str]]:
    return [[f"{r['strategy']}@{r['budget']}", f"{r['reference']}@{r['reference_budget']}",
             str(r["problems"]), _points(r["difference"]),
             f"{_points(r['ci_low'])} – {_points(r['ci_high'])}", _p(r["p_value"]),
             r["verdict"]] for r in data.get("paired", [])]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


ENDPOINT_HEADER = ("| endpoint | up | requests | samples | prompt tokens | completion tokens "
                   "| errors | retried samples | mean latency s |")


def endpoint_row(e: dict[str, Any]) -> str:
    """One endpoint of a pool, as the report's table shows it."""
    latency = "—" if e.get("latency_mean_s") is None else f"{e['latency_mean_s']:.2f}"
    return (f"| {e['url']} | {'yes' if e['up'] else 'no'} | {e['requests']} | {e['samples']} | "
            f"{e['prompt_tokens']} | {e['completion_tokens']} | {e['errors']} | "
            f"{e['retried_samples']} | {latency} |")


def determinism_line(d: dict[str, Any]) -> str:
    """Whether the run reproduces, why, and the digest of its samples to compare runs by."""
    head = "Deterministic" if d.get("deterministic") else "Not deterministic"
    digest = f"; samples sha256 {d['samples_sha256'][:16]}" if d.get("samples_sha256") else ""
    return f"{head}: {d.get('why', '')}{digest}."


def markdown(data: dict[str, Any], config: dict[str, Any]) -> str:
    lines = [
        f"# ponder eval: {config['dataset']}",
        "",
        f"Model `{config['model']}` (sha256 {config['model_sha256'][:12]}…), "
        f"{config['problems']} problems, seed {config['seed']}, ponder {config['ponder_version']}.",
        *[f"The {role} model: `{r['model']}`"
          + (f" (sha256 {r['sha256'][:12]}…)." if r.get("sha256") else ".")
          for role, r in config.get("roles", {}).items()],
        "",
        *([determinism_line(config["determinism"]), ""] if config.get("determinism") else []),
        "| " + " | ".join(header(data)) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header(data)))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(data)]
    if data.get("spent"):
        lines += [
            "",
            "Tokens actually spent per problem by the early-stopping strategies (replayed on the "
            "same stored samples as self-consistency):",
            "",
            "| strategy | most samples | mean samples | stopped early | mean tokens | p10 | p50 "
            "| p90 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {d['strategy']} | {d['budget']} | {d['samples_mean']:.2f} | "
                  f"{_pct(d['stopped_early'])} | {d['mean']:.0f} | {d['p10']:.0f} | "
                  f"{d['p50']:.0f} | {d['p90']:.0f} | {d['max']:.0f} |" for d in data["spent"]]
    if data.get("paired"):
        lines += ["", "Paired comparisons:", "",
                  "| " + " | ".join(PAIRED_HEADER) + " |",
                  "|---|---|" + "---:|" * 4 + "---|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in paired_rows(data)]
        lines += ["", PAIRED_NOTE]
    if config.get("endpoints"):
        lines += ["", "Endpoints (this invocation's requests; a resumed run counts only its own):",
                  "", ENDPOINT_HEADER, "|---|---|" + "---:|" * 7]
        lines += [endpoint_row(e) for e in config["endpoints"]]
    lines += [
        "",
        "Accuracy is the mean over problems of the expected accuracy at that budget; for sampling "
        "strategies, smaller budgets are drawn as random subsets of the largest budget's samples. "
        "The 95% interval is a normal approximation over problems. Tokens are generated tokens "
        "per problem (verifier tokens included), every model's; FLOPs are the FLOPs-equivalent "
        "cost, 2 x parameters x tokens read or written (prompts included), summed over the "
        "run's models, so a mix of models compares with one model alone; dollars, where shown, "
        "are the operator's prices per million input and output tokens (-B price=IN/OUT, or "
        "an endpoints file's price); calls and seconds of "
        "subsampled budgets are the full run's, prorated. Coverage is pass@k (unbiased "
        "estimator): the share of problems that at least one of k samples gets right, an "
        "upper bound for any selection rule.",
        "",
        "![scaling](scaling.png)",
        "",
    ]
    return "\n".join(lines)


def plot(data: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=120)
    # a run of several models is drawn against its FLOPs-equivalent cost, never against the
    # small model's tokens alone
    every = data["points"] + data["coverage"]
    axis = ("dollars" if all(p.get("dollars") is not None for p in every) else
            "flops" if config.get("roles") and all(p.get("flops") is not None for p in every)
            else "tokens")
    by_strategy: dict[str, list[dict[str, Any]]] = {}
    for p in data["points"]:
        by_strategy.setdefault(p["strategy"], []).append(p)
    for label, pts in by_strategy.items():
        pts = sorted(pts, key=lambda p: p[axis])
        if label == GREEDY:
            p = pts[0]
            cost = (f"{p['tokens']:.0f} tok" if axis == "tokens" else
                    f"{p['flops']:.2g} FLOPs" if axis == "flops" else f"${p['dollars']:.2g}")
            ax.axhline(p["accuracy"], color="0.4", linestyle=":", linewidth=1.5,
                       label=f"greedy CoT ({_pct(p['accuracy'])}, {cost})")
            continue
        xs = [max(p[axis], 1e-9) for p in pts]
        line, = ax.plot(xs, [p["accuracy"] for p in pts], marker="o", label=label)
        ax.fill_between(xs, [p["ci_low"] for p in pts], [p["ci_high"] for p in pts],
                        color=line.get_color(), alpha=0.15)
        for p, x in zip(pts, xs, strict=True):
            ax.annotate(str(p["budget"]), (x, p["accuracy"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7, color=line.get_color())
    if data["coverage"]:
        pts = sorted(data["coverage"], key=lambda p: p[axis])
        ax.plot([p[axis] for p in pts], [p["accuracy"] for p in pts], linestyle="--",
                color="black", linewidth=1, label="coverage pass@k (upper bound)")
    ax.set_xscale("log", base=2 if axis == "tokens" else 10)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel({"tokens": "mean generated tokens per problem (log2)",
                   "flops": "mean FLOPs-equivalent per problem, every model "
                   "(2 x parameters x tokens)",
                   "dollars": "mean dollars per problem, every model (the operator's prices)"
                   }[axis])
    ax.set_ylabel("accuracy")
    models = " + ".join([config["model"], *(f"{role} {Path(r['model']).name}"
                                            for role, r in config.get("roles", {}).items())])
    ax.set_title(f"{Path(config['dataset']).name} · {models} · "
                 f"{config['problems']} problems", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _html_candidates(entry: dict[str, Any]) -> str:
    items = []
    for i, c in enumerate(entry["candidates"], 1):
        mark = "✓" if c["correct"] else "✗"
        score = "" if c["score"] is None else f", score {c['score']:.3f}"
        items.append(
            f"<details><summary>{mark} #{i}: <b>{html.escape(str(c['answer']))}</b>"
            f" ({c['tokens']} tokens{score})</summary><pre>{html.escape(c['text'])}</pre>"
            "</details>"
        )
    return "".join(items)


def html_page(data: dict[str, Any], config: dict[str, Any], png: Path,
              pages: dict[str, str] | None = None) -> str:
    """The report; ``pages``: each problem's page (its link), where one was written."""
    image = base64.b64encode(png.read_bytes()).decode() if png.is_file() else ""
    head = "".join(f"<th>{h}</th>" for h in header(data))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in table_rows(data)
    )
    paired = ""
    if data.get("paired"):
        paired_head = "".join(f"<th>{html.escape(h)}</th>" for h in PAIRED_HEADER)
        paired_body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in paired_rows(data)
        )
        paired = (f"<h2>Paired comparisons</h2><table><tr>{paired_head}</tr>{paired_body}"
                  f"</table><p>{html.escape(PAIRED_NOTE)}</p>")
    problems = []
    for p in data["problems"]:
        parts = []
        page = (pages or {}).get(p["id"])
        for k, (label, entry) in enumerate(p["strategies"].items()):
            mark = "✓" if entry["correct"] else "✗"
            see = (f" <a class='see' href='{html.escape(page, quote=True)}#view={k}'>"
                   "see the thinking →</a>" if page else "")
            parts.append(
                f"<div class='s'><b>{html.escape(label)}</b> (budget {entry['budget']}): "
                f"{mark} <b>{html.escape(str(entry['answer']))}</b>{see}"
                f"{_html_candidates(entry)}</div>"
            )
        problems.append(
            f"<details class='p'><summary>{html.escape(p['id'])}: "
            f"{html.escape(p['question'][:120])} — gold <b>{html.escape(str(p['gold']))}</b>"
            f"</summary><pre>{html.escape(p['question'])}</pre>{''.join(parts)}</details>"
        )
    decoding = (f"<p>{html.escape(determinism_line(config['determinism']))}</p>"
                if config.get("determinism") else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ponder eval: {html.escape(config['dataset'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
pre {{ white-space: pre-wrap; background: #f6f6f6; padding: 6px; }}
details.p {{ border-top: 1px solid #ddd; padding: 4px 0; }}
div.s {{ margin-left: 1.5em; }} div.s details {{ margin-left: 1.5em; }}
a.see {{ margin-left: 1em; font-size: 90%; }}
</style></head><body>
<h1>ponder eval</h1>
<p>Dataset <code>{html.escape(config['dataset'])}</code>, model <code>{html.escape(config['model'])}
</code> (sha256 <code>{config['model_sha256'][:16]}…</code>), {config['problems']} problems,
seed {config['seed']}, ponder {config['ponder_version']}.</p>
{decoding}
<table><tr>{head}</tr>{body}</table>
<img alt="accuracy against tokens" src="data:image/png;base64,{image}" style="max-width:100%">
{paired}
<h2>Problems</h2>
{''.join(problems)}
</body></html>
"""


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as the reports show it: each endpoint by its redacted URL (a report is
    shared; an endpoint's userinfo or query may hold a key)."""
    endpoints = config.get("endpoints")
    if not endpoints:
        return config
    names = shown_urls([e["url"] for e in endpoints])
    return {**config, "endpoints": [{**e, "url": name}
                                    for e, name in zip(endpoints, names, strict=True)]}


def write_reports(out: Path, data: dict[str, Any], config: dict[str, Any]) -> list[Path]:
    config = shown_config(config)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "scaling.png"
    plot(data, config, png)
    md = out / "report.md"
    md.write_text(markdown(data, config), encoding="utf-8")
    pages = write_problem_pages(out, data, config)
    page = out / "report.html"
    page.write_text(html_page(data, config, png, pages), encoding="utf-8")
    js = out / "report.json"
    js.write_text(json.dumps({"config": config, **data}, indent=2, default=str), encoding="utf-8")
    return [md, png, page, js]
