"""A simulated GPU replica behind an OpenAI-compatible API, for the endpoint-pool tests and
benchmark: what two CPU cores cannot measure (N real replicas) is simulated with sleeps.

- time: a request waits for a free slot per sample (``--slots`` sequences decode at once), then
  ``--ttft`` plus ``--prefill-ms`` per prompt token not in the prefix cache, then
  ``--per-token`` seconds per generated token (``--tokens`` of them);
- prefix cache: the ``--cache`` most recent prompts; a prompt's cached tokens are its longest
  common prefix with one of them (tokens are 4 characters here);
- answers: "What is A + B?" is answered "The answer is A+B." with probability ``--accuracy``,
  else one more, decided by a hash of (seed, prompt), so any replica gives the same sample for
  the same seed (sample i of a request with seed s uses seed s + i, as ponder reseeds);
- every request is logged as one JSON line to ``--log`` (server name, prompt key, n, prefill,
  cached and prompt tokens); ``GET /stats`` sums them.

Run: ``python bench/sim_replica.py --port 8101 --name r1 --slots 4 --ttft 0.05``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import time
from collections import OrderedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

QUESTION = re.compile(r"What is (-?\d+) \+ (-?\d+)\?")
CHARS_PER_TOKEN = 4


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="replica")
    p.add_argument("--model", default="sim")
    p.add_argument("--slots", type=int, default=4, help="sequences decoded at once")
    p.add_argument("--ttft", type=float, default=0.02, help="seconds before the first token")
    p.add_argument("--prefill-ms", type=float, default=0.0,
                   help="milliseconds per uncached prompt token")
    p.add_argument("--per-token", type=float, default=0.001, help="seconds per generated token")
    p.add_argument("--tokens", type=int, default=32, help="tokens per answer")
    p.add_argument("--cache", type=int, default=0, help="prompts kept in the prefix cache")
    p.add_argument("--accuracy", type=float, default=0.6)
    p.add_argument("--steps", type=int, default=3, help="steps per path in a step search")
    p.add_argument("--no-n", action="store_true", help="ignore n (answer one choice)")
    p.add_argument("--no-logprobs", action="store_true")
    p.add_argument("--log", default=None, help="a JSONL file of the requests")
    return p.parse_args(argv)


class Replica:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots = asyncio.Semaphore(args.slots)
        self.cache: OrderedDict[str, None] = OrderedDict()
        self.totals = {"requests": 0, "samples": 0, "prompt_tokens": 0, "cached_tokens": 0}
        self.log = open(args.log, "a", buffering=1) if args.log else None

    # -- the prompt ------------------------------------------------------------------------

    def cached_tokens(self, prompt: str) -> int:
        best = 0
        for seen in self.cache:
            best = max(best, len(os.path.commonprefix([seen, prompt])))
        self.cache[prompt] = None
        self.cache.move_to_end(prompt)
        while len(self.cache) > self.args.cache:
            self.cache.popitem(last=False)
        return best // CHARS_PER_TOKEN

    def answer(self, messages: list[dict], seed: int | None) -> str:
        text = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
        last = messages[-1] if messages else {}
        if last.get("role") == "assistant" and "1, 2, 3, 4," in str(last.get("content")):
            return " 5, 6, 7, 8, 9, 10"  # the prefill probe: a trailing assistant message works
        match = QUESTION.search(text)
        if match is None:
            return "Yes. The answer is 42."
        right = int(match.group(1)) + int(match.group(2))
        rng = random.Random(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest()) \
            if seed is not None else random
        value = right if rng.random() < self.args.accuracy else right + 1
        return f"Adding the numbers. The answer is {value}."

    # -- the API ---------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        if body.get("model") != self.args.model:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found",
                                           "type": "not_found", "code": 404}}, status_code=404)
        messages = body.get("messages") or []
        n = 1 if self.args.no_n else int(body.get("n") or 1)
        seed = body.get("seed")
        prompt = json.dumps(messages, sort_keys=True)
        prompt_tokens = max(1, len(prompt) // CHARS_PER_TOKEN)
        cached = self.cached_tokens(prompt) if self.args.cache else 0
        user = next((m.get("content") for m in messages if m.get("role") == "user"), "")
        entry = {"t": time.time(), "server": self.args.name, "n": n,
                 "key": hashlib.sha256(str(user).encode()).hexdigest()[:12],
                 "system": next((m.get("content", "")[:40] for m in messages
                                 if m.get("role") == "system"), ""),
                 "prefill": bool(messages) and messages[-1].get("role") == "assistant",
                 "logprobs": bool(body.get("logprobs")),
                 "prompt_tokens": prompt_tokens, "cached_tokens": cached}
        self.totals["requests"] += 1
        self.totals["samples"] += n
        self.totals["prompt_tokens"] += prompt_tokens
        self.totals["cached_tokens"] += cached
        if self.log is not None:
            self.log.write(json.dumps(entry) + "\n")
        want = int(body.get("max_tokens") or self.args.tokens)
        tokens = max(1, min(self.args.tokens, want))
        prefill_s = self.args.prefill_ms / 1000 * (prompt_tokens - cached)

        async def one(i: int) -> str:
            async with self.slots:
                await asyncio.sleep(self.args.ttft + (prefill_s if i == 0 else 0.0)
                                    + self.args.per_token * tokens)
            return self.answer(messages, None if seed is None else seed + i)

        texts = await asyncio.gather(*(one(i) for i in range(n)))
        finish = "length" if want < self.args.tokens else "stop"
        stops = body.get("stop") or []
        stop_reason = None
        if "\n\n" in stops and entry["prefill"]:
            # a step search: one step per call until --steps, then the answer
            done = str(messages[-1].get("content") or "").count("\n\n")
            if done + 1 < self.args.steps:
                texts = [f"Step {done + 1}: I work on part {done + 1} of the sum, way {i}."
                         for i in range(n)]
                finish, stop_reason = "stop", "\n\n"
        logprobs = body.get("logprobs") and not self.args.no_logprobs
        choices = [{
            "index": i, "finish_reason": finish, "stop_reason": stop_reason,
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": [{"token": w, "logprob": -0.1, "bytes": None,
                                      "top_logprobs": []} for w in text.split()]}
            if logprobs else None,
        } for i, text in enumerate(texts)]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens * n,
                 "total_tokens": prompt_tokens + tokens * n,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        reply = {"id": f"sim-{self.totals['requests']}", "object": "chat.completion",
                 "created": int(time.time()), "model": self.args.model, "choices": choices,
                 "usage": usage}
        if body.get("stream"):
            return StreamingResponse(self.sse(reply), media_type="text/event-stream")
        return JSONResponse(reply)

    async def sse(self, reply: dict):
        choice = reply["choices"][0]
        base = {k: reply[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        text = choice["message"]["content"]
        yield "data: " + json.dumps({**base, "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": text},
             "finish_reason": choice["finish_reason"], "logprobs": choice["logprobs"]}]}) + "\n\n"
        yield "data: " + json.dumps({**base, "choices": [], "usage": reply["usage"]}) + "\n\n"
        yield "data: [DONE]\n\n"

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": self.args.model, "object": "model", "created": 0, "owned_by": "sim"}]})

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"name": self.args.name, **self.totals})


def app(args: argparse.Namespace) -> Starlette:
    replica = Replica(args)
    return Starlette(routes=[
        Route("/v1/chat/completions", replica.chat, methods=["POST"]),
        Route("/v1/models", replica.models, methods=["GET"]),
        Route("/stats", replica.stats, methods=["GET"]),
    ])


def main() -> None:
    args = parse()
    import uvicorn

    uvicorn.run(app(args), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
