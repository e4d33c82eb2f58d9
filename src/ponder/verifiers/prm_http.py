"""``prm-http``: a process reward model served over HTTP, so reward models scale out like policies.

It speaks vLLM's pooling API: ``POST {url}/pooling`` with ``{"model", "input": [texts]}``, one
text per partial solution formatted by the PRM's ``convention`` (see ``ponder.verifiers.prm``),
and reads one row per step from each ``data[i].data``: a pair of label probabilities (the
``label`` column is the score), or a single value (with ``activation=sigmoid`` for raw logits).
Serve the PRM with step pooling, e.g.::

    vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling --trust-remote-code

(for Math-Shepherd also ``--pooler-config '{"pooling_type": "STEP", "step_tag_id": 12902,
"returned_token_ids": [648, 387]}'`` and ``label=0``).

Requests go through ``httpx.AsyncClient`` (one per event loop, as the OpenAI backend keeps its
client), retried like the OpenAI SDK retries (connection failures, timeouts, 408, 409, 429 and
5xx; ``max_retries`` times, backing off from 0.5 s), and failures map to the same errors as
the OpenAI backend's, naming the server by its redacted URL.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from ponder.backends.endpoints import redact_url, redact_urls
from ponder.backends.loops import PerLoop
from ponder.core.context import Context
from ponder.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    RequestRejected,
)
from ponder.types import Problem, Step, Usage
from ponder.verifiers.prm import QWEN_SYSTEM, convention_spec, step_pieces
from ponder.verifiers.steps import NEUTRAL, known_scores

QWEN_CHAT = ("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
             "<|im_start|>assistant\n")


def format_for_prm(convention: str, separator: str, problem: Problem, steps: Sequence[Step]) -> str:
    """The text a PRM of ``convention`` reads, without a tokenizer (Qwen's chat markup written
    out: the server does not apply a template to raw input)."""
    head, pieces = step_pieces(convention, separator, problem.question, steps,
                               QWEN_CHAT.format(system=QWEN_SYSTEM, question=problem.question))
    tail = "<|im_end|>\n" if convention == "qwen" else ""
    return head + "".join(p + separator for p in pieces) + tail


class PrmHttpScorer:
    name: ClassVar[str] = "prm-http"
    description: ClassVar[str] = "a process reward model behind vLLM's pooling API"
    needs_logprobs: ClassVar[bool] = False

    def __init__(self, url: str = "", model: str = "", convention: str = "qwen", *,
                 separator: str | None = None, label: int = 1, activation: str = "none",
                 api_key: str | None = None, timeout: float = 120.0, max_retries: int = 3,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not url:
            raise ConfigError("the prm-http scorer needs a url: -o scorer_options='{\"url\": "
                              "\"http://host:8000\", \"model\": \"NAME\"}'")
        spec = convention_spec(convention)
        if activation not in ("none", "sigmoid"):
            raise ConfigError("activation must be none or sigmoid")
        given = httpx.URL(url)  # a query (a proxy's token) stays a query, after the path
        path = given.path.rstrip("/").removesuffix("/v1").removesuffix("/pooling") + "/pooling"
        self.url = str(given.copy_with(path=path))
        self.model = model
        self.convention = convention
        self.separator = separator or spec["separator"]
        self.label = label
        self.activation = activation
        self.api_key = api_key
        self.timeout = timeout
        if max_retries < 0:
            raise ConfigError("max_retries must be 0 or more")
        self.max_retries = max_retries
        self._transport = transport  # tests: an httpx.MockTransport
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop(self._new_client, _close_client)

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self._transport)

    async def aclose(self) -> None:
        await self._clients.aclose_current()

    async def _post(self, texts: list[str]) -> tuple[list[Any], int]:
        """One row per text, and the prompt tokens the server says it scored (0: it does not
        say)."""
        body: dict[str, Any] = {"input": texts}
        if self.model:
            body["model"] = self.model
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        shown = redact_url(self.url)  # errors reach logs and replies: no userinfo or token
        reply = await self._send(body, headers, shown)
        try:
            payload = reply.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError(f"reward server {shown} did not answer JSON") from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            raise BackendError(f"reward server {shown}: expected {len(texts)} results")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens", 0)
        rows = [item.get("data") if isinstance(item, dict) else None
                for item in sorted(data, key=lambda d: d.get("index", 0)
                                   if isinstance(d, dict) else 0)]
        return rows, tokens if isinstance(tokens, int) and tokens >= 0 else 0

    async def _send(self, body: dict[str, Any], headers: dict[str, str], shown: str
                    ) -> httpx.Response:
        """The server's successful reply, retried where a retry can help; ponder's error
        otherwise (the OpenAI backend's mapping)."""
        client = self._clients.get()
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                reply = await client.post(self.url, json=body, headers=headers)
            except httpx.TimeoutException:
                if last:
                    raise BackendTimeout(f"the reward server {shown} timed out") from None
            except httpx.TransportError as exc:
                if last:
                    raise BackendUnavailable(f"cannot reach the reward server {shown}: "
                                             f"{redact_urls(str(exc))}") from None
            else:
                if reply.status_code < 400:
                    return reply
                if reply.status_code not in RETRIED or last:
                    raise _status_error(reply, shown)
            await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt) * (0.75 + 0.25 * random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _step_score(self, row: Any) -> float:
        value = row[self.label] if isinstance(row, list) and len(row) > self.label else (
            row[0] if isinstance(row, list) and row else row)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return NEUTRAL
        return 1.0 / (1.0 + math.exp(-value)) if self.activation == "sigmoid" else float(value)

    async def score_steps(self, problem: Problem, partials: Sequence[Sequence[Step]],
                          ctx: Context, parent: int | None = None,
                          known: Sequence[Sequence[float]] | None = None) -> list[list[float]]:
        out = [known_scores(known, i, len(steps)) for i, steps in enumerate(partials)]
        todo = [i for i, steps in enumerate(partials) if len(out[i]) < len(steps)]
        if not todo:
            return out
        texts = [format_for_prm(self.convention, self.separator, problem, partials[i])
                 for i in todo]
        started = time.monotonic()
        rows, tokens = await self._post(texts)
        for i, row in zip(todo, rows, strict=True):
            n = len(partials[i])
            # The steps' separators are the text's last ones; the server also gives a row for any
            # earlier one (a value-head PRM's "\n" after the question). Fewer rows: cut short.
            scores = [self._step_score(r) for r in (row or [])]
            scores = scores[-n:] if len(scores) > n else scores
            out[i] = scores + [NEUTRAL] * (n - len(scores))
        seconds = time.monotonic() - started
        ctx.account("score", f"prm-http x{len(todo)}", Usage(prompt_tokens=tokens, calls=1,
                                                                seconds=seconds),
                    parent=parent, scorer=self.name, seconds=round(seconds, 3),
                    scores=[[round(s, 4) for s in out[i]] for i in todo])
        return out


# what the OpenAI SDK retries: a timeout, a conflict, rate limits and server errors
RETRIED = frozenset({408, 409, 429, 500, 502, 503, 504})


def _status_error(reply: httpx.Response, shown: str) -> BackendError:
    """A failed reply as the OpenAI backend maps it: the server named by its redacted URL, the
    first 300 characters of its answer redacted too."""
    detail = redact_urls(reply.text[:300])
    message = f"the reward server {shown} answered {reply.status_code}: {detail}"
    if reply.status_code == 401:
        return BackendError(f"the reward server {shown} rejected the API key")
    if reply.status_code in (400, 422):
        return RequestRejected(message)
    if reply.status_code in RETRIED:
        return BackendUnavailable(message)  # still failing after the retries
    return BackendError(message)


async def _close_client(client: httpx.AsyncClient) -> None:
    await client.aclose()
