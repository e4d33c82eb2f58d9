"""Agent tasks through ``ponder serve``: 12 questions that need a calculator or a lookup tool
(defined here, with known answers), asked with the official openai client's tool loop against
the benchmark model in-process. Plain pass-through (greedy) against self-consistency over
actions at N=4 and N=8: accuracy and tokens per task (every internal call of every turn).

Every reply the model writes (each candidate of each turn) is also read as the server reads
it: a *call attempt* is a reply with ``<tool_call>`` markup or a ``{"name", "arguments"}`` object;
it *parses* when every call in it reads as JSON, names a given tool and has arguments valid
against the tool's schema. ``--no-grammar`` samples freely; by default the calls decode under
their tools' grammar (``ponder serve``'s default on llama.cpp).

Resumable: each finished task is appended to bench/runs/agent_tools.jsonl and skipped on the
next run; ``--minutes`` stops starting new tasks after that long. ``--report`` writes
bench/results/agent_tools-DATE.md from what is stored (``--compare NAME`` adds another run's
rows, e.g. the same configs without grammar, side by side).

    python bench/agent_tools.py [--configs pass,sc4,sc8] [--minutes 18] [--no-grammar]
        [--report [--compare NAME]] [--name N]
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import math
import operator
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import uvicorn

from ponder.domains.answers import extract_answer, to_number
from ponder.domains.chat import CALLS, CHAT, chat_problem, parse_calls

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "bench" / "runs" / "agent_tools.jsonl"  # --name NAME: bench/runs/NAME.jsonl

TOOLS = [
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression (+ - * / ** "
        "and parentheses) and return its value.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                       "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "lookup", "description": "Look up a product in the store's inventory: its "
        "stock, price (dollars) and aisle.",
        "parameters": {"type": "object", "properties": {"item": {"type": "string"}},
                       "required": ["item"]}}},
]
INVENTORY = {
    "blue kettle": {"stock": 14, "price": 23.5, "aisle": "C7"},
    "garden hose": {"stock": 52, "price": 18, "aisle": "F2"},
    "desk lamp": {"stock": 9, "price": 41, "aisle": "B3"},
    "yoga mat": {"stock": 31, "price": 27, "aisle": "D1"},
    "rain jacket": {"stock": 6, "price": 64, "aisle": "A5"},
}
TASKS = [
    ("What is 3847 * 29?", "111563"),
    ("What is 98765 - 43219 + 1234?", "56780"),
    ("What is 17.5 percent of 2480?", "434"),
    ("What is (125 + 375) * 48 / 16?", "1500"),
    ("What is 7 to the power of 6?", "117649"),
    ("What is 123456 divided by 64?", "1929"),
    ("How many garden hoses does the store have in stock?", "52"),
    ("In which aisle of the store is the desk lamp?", "B3"),
    ("What is the price of a yoga mat at the store, in dollars?", "27"),
    ("How many blue kettles does the store have in stock?", "14"),
    ("What do 3 desk lamps from the store cost in total, in dollars?", "123"),
    ("How many yoga mats and garden hoses does the store have in stock together?", "83"),
]
SYSTEM = ("You are a helpful assistant with tools. Use them to get facts and to compute; do "
          "not guess. When you know the answer, reply with a final line 'The answer is: "
          "<answer>'.")
CONFIGS = {"pass": None, "sc4": 4, "sc8": 8}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg,
        ast.UAdd: operator.pos, ast.Mod: operator.mod}


def calculate(expression: str) -> str:
    """Arithmetic only, read as a syntax tree (no names, no calls: nothing of the model runs)."""
    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.operand))
        raise ValueError("not arithmetic")
    try:
        result = value(ast.parse(expression.replace("^", "**"), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
        return f"error: {exc}"
    return f"{result:g}" if isinstance(result, float) and not result.is_integer() \
        else str(int(result))


def lookup(item: str) -> str:
    key = item.strip().lower()
    for name, record in INVENTORY.items():
        if key in (name, name + "s", name + "es") or name in key:
            return json.dumps({"item": name, **record})
    return json.dumps({"error": f"no item named {item!r}"})


def call_tool(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return "error: arguments are not JSON"
    if name == "calculator":
        return calculate(str(args.get("expression", "")))
    if name == "lookup":
        return lookup(str(args.get("item", "")))
    return f"error: no tool named {name}"


TOOL_PROBLEM = chat_problem([{"role": "user", "content": "-"}],
                            tools=[t["function"] for t in TOOLS])


def read_attempt(text: str) -> tuple[int, int]:
    """(call attempts, attempts that parse) in one reply of the model: 0 or 1 each."""
    calls = parse_calls(text)
    if calls == []:
        return 0, 0
    answer = CHAT.extract(TOOL_PROBLEM, text)
    return 1, int(answer is not None and answer.startswith(CALLS))


def correct(content: str, gold: str) -> bool:
    """The final answer is the gold one: a number equal to a numeric gold (an unevaluated
    expression such as ``7^6`` is not an answer), else the same text."""
    answer = (extract_answer(content) or content).strip()
    number = to_number(gold)
    if number is not None:
        value = to_number(answer)
        return value is not None and abs(value - number) < 1e-6
    return answer.strip(" .").lower() == gold.lower()


def solve(client: openai.OpenAI, model_id: str, config: str, question: str, seed: int,
          max_tokens: int) -> dict:
    n = CONFIGS[config]
    messages: list[dict] = [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": question}]
    tokens = calls = 0
    content = ""
    for _ in range(4):
        if n is None:
            reply = client.chat.completions.create(
                model=model_id, messages=messages, tools=TOOLS, temperature=0.0,
                max_tokens=max_tokens, seed=seed)
        else:
            reply = client.chat.completions.create(
                model="ponder-self-consistency", messages=messages, tools=TOOLS,
                max_tokens=max_tokens, seed=seed, extra_body={"ponder": {"n": n}})
        tokens += reply.usage.total_tokens
        message = reply.choices[0].message
        if not message.tool_calls:
            content = message.content or ""
            break
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                          "arguments": c.function.arguments}}
            for c in message.tool_calls]})
        for c in message.tool_calls:
            calls += 1
            messages.append({"role": "tool", "tool_call_id": c.id,
                             "content": call_tool(c.function.name, c.function.arguments)})
    return {"content": content, "tokens": tokens, "tool_calls": calls}


def stored() -> list[dict]:
    if not RUNS.exists():
        return []
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]


def run(configs: list[str], minutes: float, max_tokens: int, grammar: bool) -> None:
    from ponder.backends.llamacpp import LlamaCppBackend
    from ponder.server.app import PonderServer

    class Reading(LlamaCppBackend):
        """The benchmark model, every reply it writes read for call attempts."""

        attempts = parsed = 0

        async def generate(self, requests, on_progress=None):
            rows = await super().generate(requests, on_progress)
            for row in rows:
                for completion in row:
                    tried, ok = read_attempt(completion.text)
                    Reading.attempts += tried
                    Reading.parsed += ok
            return rows

    done = {(r["config"], r["task"]) for r in stored()}
    todo = [(c, k) for c in configs for k in range(len(TASKS)) if (c, k) not in done]
    if not todo:
        print("nothing left to run")
        return
    model = str(ROOT / "bench" / "models" / "qwen2.5-coder-0.5b-instruct.gguf")
    if not Path(model).exists():
        model = subprocess.run([sys.executable, str(ROOT / "bench" / "fetch_model.py")],
                               capture_output=True, text=True, check=True).stdout.strip()
    backend = Reading(model, n_ctx=32768, n_seq_max=8)  # 4096 per sequence: tool loops grow
    server = PonderServer(backend, max_concurrent=2, grammar=grammar)
    uv = uvicorn.Server(uvicorn.Config(server.app(), host="127.0.0.1", port=0,
                                       log_level="warning"))
    threading.Thread(target=uv.run, daemon=True).start()
    while not uv.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{uv.servers[0].sockets[0].getsockname()[1]}/v1"
    client = openai.OpenAI(base_url=url, api_key="-", max_retries=0, timeout=3600)
    started = time.monotonic()
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    try:
        for config, k in todo:
            if time.monotonic() - started > minutes * 60:
                print("time is up; run again to go on")
                break
            question, gold = TASKS[k]
            t0 = time.monotonic()
            Reading.attempts = Reading.parsed = 0
            try:
                out = solve(client, server.model_id, config, question, seed=k,
                            max_tokens=max_tokens)
            except openai.APIError as exc:
                print(f"{config} task {k}: failed: {exc}", flush=True)
                continue
            record = {"config": config, "task": k, "gold": gold, **out,
                      "grammar": grammar, "attempts": Reading.attempts,
                      "parsed": Reading.parsed,
                      "correct": correct(out["content"], gold),
                      "seconds": round(time.monotonic() - t0, 1)}
            with RUNS.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{config} task {k}: {'ok ' if record['correct'] else 'bad'} "
                  f"{record['tokens']} tokens {record['seconds']} s "
                  f"{out['content'][-60:]!r}", flush=True)
    finally:
        uv.should_exit = True
        time.sleep(0.5)
        backend.close()


def stored_run(name: str) -> list[dict]:
    path = RUNS.with_name(f"{name}.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar) over the tasks where two configurations disagree."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def report(max_tokens: int, note: str = "", compare: str = "") -> None:
    runs = [(RUNS.stem, stored_run(RUNS.stem))]
    if compare:
        runs.append((compare, stored_run(compare)))
    today = datetime.date.today()
    lines = [f"# Agent tasks through ponder serve ({today})", "",
             f"{len(TASKS)} questions needing a calculator or an inventory lookup (tools defined "
             "in bench/agent_tools.py, known answers), the benchmark model "
             "(qwen2.5-coder-0.5b-instruct, in-process llama.cpp) behind `ponder serve`, the "
             "official openai client's tool loop (at most 4 model turns per task). "
             f"max_tokens={max_tokens} per turn. Pass-through: the underlying model, greedy, "
             "tools described in the prompt and the call parsed back. Self-consistency: N "
             "candidates per turn at temperature 0.7, voting over actions (same function + "
             "JSON-equal arguments = one vote; a text answer is its own action). Call attempts: "
             "replies of the model (every candidate of every turn) with call markup or a "
             "`{name, arguments}` object; parsed: those whose every call reads as JSON, names a "
             "given tool and has arguments valid against its schema.", "",
             *([note, ""] if note else []),
             "| run | grammar | config | tasks | correct | accuracy | call attempts | parsed "
             "| parse rate | mean tokens / task | mean tool calls | mean s / task |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cells: dict[tuple[str, str], dict[int, dict]] = {}
    for name, records in runs:
        for r in records:  # graded again: the grader may be stricter than when the task ran
            r["correct"] = correct(r["content"], r["gold"])
            cells.setdefault((name, r["config"]), {})[r["task"]] = r
    columns = [(name, c) for name, _ in runs for c in CONFIGS if (name, c) in cells]
    for name, config in columns:
        rows = list(cells[(name, config)].values())
        ok = sum(r["correct"] for r in rows)
        tried = sum(r.get("attempts", 0) for r in rows)
        parsed = sum(r.get("parsed", 0) for r in rows)
        grammar = {True: "on", False: "off"}.get(rows[0].get("grammar"), "?")
        rate = f"{parsed / tried:.0%}" if tried else "–"
        lines.append(f"| {name} | {grammar} | {config} | {len(rows)} | {ok} "
                     f"| {ok / len(rows):.0%} | {tried} | {parsed} | {rate} "
                     f"| {sum(r['tokens'] for r in rows) / len(rows):.0f} "
                     f"| {sum(r['tool_calls'] for r in rows) / len(rows):.1f} "
                     f"| {sum(r['seconds'] for r in rows) / len(rows):.0f} |")
    if compare:
        lines += ["", f"Paired, task by task ({RUNS.stem} against {compare}, exact sign test "
                  "over the tasks where they disagree):", ""]
        for config in CONFIGS:
            a, b = cells.get((RUNS.stem, config)), cells.get((compare, config))
            if not a or not b:
                continue
            both = sorted(set(a) & set(b))
            wins = sum(a[k]["correct"] and not b[k]["correct"] for k in both)
            losses = sum(b[k]["correct"] and not a[k]["correct"] for k in both)
            lines.append(f"- {config}: {len(both)} tasks, {wins} right only with "
                         f"{RUNS.stem}, {losses} right only with {compare}, "
                         f"p = {sign_test(wins, losses):.2f}")
    lines += ["", "Per task (✓ correct):", "",
              "| task | gold | " + " | ".join(f"{n} {c}" for n, c in columns) + " |",
              "|---|---|" + "---|" * len(columns)]
    for k, (question, gold) in enumerate(TASKS):
        marks = []
        for key in columns:
            row = cells[key].get(k)
            marks.append("–" if row is None else ("✓" if row["correct"] else "✗"))
        lines.append(f"| {question} | {gold} | " + " | ".join(marks) + " |")
    lines += ["", "With 12 tasks, a difference of one or two tasks is not significant (an exact "
              "sign test over the tasks where the configs disagree needs at least 6 one-sided "
              "disagreements for p < 0.05).", "",
              f"Command: `python bench/agent_tools.py --configs pass,sc4,sc8 --name {RUNS.stem}` "
              "(resumable; `--no-grammar` for free sampling), then `python bench/agent_tools.py "
              f"--report --name {RUNS.stem}" + (f" --compare {compare}" if compare else "")
              + "`."]
    out = ROOT / "bench" / "results" / f"{RUNS.stem}-{today}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="pass,sc4,sc8")
    parser.add_argument("--minutes", type=float, default=18.0)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--note", default="", help="a paragraph for the report")
    parser.add_argument("--compare", default="", metavar="NAME",
                        help="with --report: another run's rows beside these, paired")
    parser.add_argument("--no-grammar", dest="grammar", action="store_false",
                        help="sample calls freely (default: under their tools' grammar)")
    parser.add_argument("--name", default="agent_tools",
                        help="the run's name: bench/runs/NAME.jsonl, bench/results/NAME-DATE.md")
    args = parser.parse_args()
    global RUNS
    RUNS = RUNS.with_name(f"{args.name}.jsonl")
    if args.report:
        report(args.max_tokens, args.note, args.compare)
        return
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"agent_tools: unknown config {unknown[0]!r}; valid: {', '.join(CONFIGS)}")
    run(configs, args.minutes, args.max_tokens, args.grammar)


if __name__ == "__main__":
    main()
