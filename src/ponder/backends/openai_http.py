"""Any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama, OpenAI) over HTTP.

Capabilities are probed once per backend, on first use:

- ``n``: one request with n=2 must return two choices; otherwise n samples become n parallel
  requests under a concurrency limit.
- logprobs: the probe asks for them and checks they come back.
- prefill: vLLM's ``continue_final_message`` is tried first, then a trailing assistant message;
  the probe checks that the reply continues a counting sequence. Where neither works, a partial
  answer is sent back as context with a request to continue it (an emulation, marked as such).

Retries with backoff on 429, 5xx and timeouts come from the ``openai`` client. Reasoning text that
servers return separately (``reasoning_content`` / ``reasoning``) is kept apart from the answer.

The client (its pooled connections), the concurrency limit and the probe's lock are kept per
event loop (:mod:`ponder.backends.loops`): ``ponder serve`` probes on a loop of its own at startup
and serves on another, where a connection kept alive from the probe would fail the first request.
The URL is used as given (userinfo, query) for the requests and shown redacted everywhere else:
errors, and the lines the ``openai`` and ``httpx`` libraries log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ponder.backends.base import (
    Backend,
    Capabilities,
    ProgressCallback,
    generate_each,
    parameter_count,
)
from ponder.backends.endpoints import redact_url, redact_urls
from ponder.backends.loops import PerLoop
from ponder.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    MissingDependency,
    ModelNotServed,
    RequestRejected,
)
from ponder.types import Completion, GenerationRequest, TokenLogprob, Usage

# Fields of a /models entry that change when the same model is served again (vLLM's created is
# the time of the request).
VOLATILE_MODEL_FIELDS = ("created", "object", "permission", "permissions")
CONTINUE_INSTRUCTION = "Continue your answer exactly where it stops. Do not repeat any of it."
_PROBE_QUESTION = "Count from 1 to 10, separated by commas and spaces."
_PROBE_PREFILL = "1, 2, 3, 4,"


# the loggers that write a request's full URL: httpx at INFO (httpx2 under openai 3), the
# openai client at DEBUG (older versions)
CLIENT_LOGGERS = ("httpx", "httpx2", "openai._base_client")


def _import_openai():
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependency("openai", "openai") from exc
    return openai


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every URL in it redacted: httpx logs each request as
    ``HTTP Request: POST http://user:pass@host/v1/...?token=...``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_urls(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def guard_client_logs() -> None:
    """Put :class:`RedactingFilter` on the client libraries' loggers, once. A logger's filter
    sees only its own records (not its children's), so each logger that writes URLs gets one."""
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def client_target(url: str) -> tuple[str, dict[str, str]]:
    """The base URL as the ``openai`` client takes it (no query, no fragment) and the query it
    is to send with every request: given a base URL with a query, the client appends each
    path to the query (``/v1/?token=tchat/completions``)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")), query


@dataclass
class _OnLoop:
    """What the backend holds on one event loop."""

    client: Any  # openai.AsyncOpenAI
    semaphore: asyncio.Semaphore
    probe_lock: asyncio.Lock


async def _close_on_loop(on_loop: _OnLoop) -> None:
    await on_loop.client.close()


class OpenAIBackend(Backend):
    """Talks to ``base_url`` (e.g. ``http://localhost:8000/v1``) for model ``model``."""

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
        probe: bool = True,
        parameters: int | float | None = None,
    ) -> None:
        openai = _import_openai()
        guard_client_logs()
        self._openai = openai
        self.model = model
        # the served model's size, as the operator states it (-B parameters=1.5e9, or an
        # endpoints file's ``parameters``): a server does not say it; None: unknown
        self.parameters = parameter_count(parameters)
        self.base_url = base_url  # as given, for the requests; never shown: see shown_url
        self.shown_url = redact_url(base_url)
        target, query = client_target(base_url)
        self._client_options = {
            "base_url": target, "default_query": query or None,
            "api_key": api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            "timeout": timeout, "max_retries": max_retries,
        }
        self._max_concurrency = max_concurrency
        self._loops: PerLoop[_OnLoop] = PerLoop(self._on_new_loop, _close_on_loop)
        self._probe_enabled = probe
        self._probed = False
        self._caps = Capabilities()
        self.prefill_mode = "emulate"  # "vllm" | "assistant" | "emulate"
        self.served: dict[str, Any] = {}  # the server's /models entry for the model
        self.tokenize_url: str | None = None  # a tokenizer endpoint the server answers

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    # -- per event loop --------------------------------------------------------------------

    def _on_new_loop(self) -> _OnLoop:
        client = self._openai.AsyncOpenAI(**self._client_options)
        return _OnLoop(client, asyncio.Semaphore(self._max_concurrency), asyncio.Lock())

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client of the running event loop (made on first use)."""
        return self._loops.get().client

    @client.setter
    def client(self, client: Any) -> None:
        """Use ``client`` on the running loop (a test's client over a scripted transport)."""
        self._loops.get().client = client

    @property
    def _semaphore(self) -> asyncio.Semaphore:
        return self._loops.get().semaphore

    # -- errors ----------------------------------------------------------------------------

    def _translate(self, exc: Exception) -> BackendError:
        """The client's exception as one of ponder's, naming the server by its redacted URL
        (whatever text of the exception or the server's reply is kept is redacted too)."""
        openai = self._openai
        where = self.shown_url
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeout(f"the server at {where} timed out")
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailable(f"cannot reach the server at {where}")
        if isinstance(exc, openai.AuthenticationError):
            return BackendError(f"the server at {where} rejected the API key")
        if isinstance(exc, openai.NotFoundError):
            return ModelNotServed(f"the server at {where} does not serve {self.model!r}")
        if isinstance(exc, openai.APIStatusError):
            detail = redact_urls(str(getattr(exc, "message", exc)))
            message = f"the server at {where} answered {exc.status_code}: {detail}"
            if exc.status_code in (400, 422):
                return RequestRejected(message)
            if exc.status_code == 429 or exc.status_code >= 500:
                return BackendUnavailable(message)  # still failing after the retries
            return BackendError(message)
        return BackendError(f"request to {where} failed: {redact_urls(str(exc))}")

    async def _call(self, **kwargs: Any) -> Any:
        openai = self._openai
        async with self._semaphore:
            try:
                return await self.client.chat.completions.create(model=self.model, **kwargs)
            except openai.OpenAIError as exc:
                raise self._translate(exc) from exc

    # -- probing ---------------------------------------------------------------------------

    async def probe(self) -> Capabilities:
        """Find out once what the endpoint honours; later calls return the cached answer."""
        async with self._loops.get().probe_lock:
            if self._probed:
                return self._caps
            await self._check_model()
            parallel_n = logprobs = False
            if self._probe_enabled:
                parallel_n, logprobs = await self._probe_n_and_logprobs()
                self.prefill_mode = await self._probe_prefill()
                self.tokenize_url = await self._probe_tokenize()
            self._caps = Capabilities(
                parallel_n=parallel_n,
                logprobs=logprobs,
                prefill=True,  # natively, or emulated: see prefill_mode
                early_stop=True,
            )
            self._probed = True
            return self._caps

    async def _check_model(self) -> None:
        openai = self._openai
        try:
            page = await self.client.models.list()
        except openai.NotFoundError:
            return  # some servers have no /models; the first request will tell
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        served = [m.id for m in page.data]
        for entry in page.data:
            if entry.id == self.model:
                self.served = {k: v for k, v in entry.model_dump().items()
                               if k not in VOLATILE_MODEL_FIELDS}
        if served and self.model not in served:
            raise ModelNotServed(
                f"the server at {self.shown_url} does not serve {self.model!r}; "
                f"it serves: {', '.join(served[:10])}"
            )

    async def _probe_n_and_logprobs(self) -> tuple[bool, bool]:
        messages = [{"role": "user", "content": "Say yes."}]
        try:
            reply = await self._call(messages=messages, n=2, max_tokens=1, temperature=1.0,
                                     logprobs=True, top_logprobs=2)
        except RequestRejected:  # an unsupported parameter; any other failure is the answer
            reply = None
        if reply is not None:
            lp = reply.choices[0].logprobs if reply.choices else None
            return len(reply.choices) == 2, bool(lp and lp.content)
        try:
            reply = await self._call(messages=messages, max_tokens=1, logprobs=True,
                                     top_logprobs=2)
            lp = reply.choices[0].logprobs if reply.choices else None
            return False, bool(lp and lp.content)
        except RequestRejected:
            return False, False

    async def _probe_prefill(self) -> str:
        messages = [
            {"role": "user", "content": _PROBE_QUESTION},
            {"role": "assistant", "content": _PROBE_PREFILL},
        ]
        attempts = [
            ("vllm", {"extra_body": {"continue_final_message": True,
                                     "add_generation_prompt": False}}),
            ("assistant", {}),
        ]
        for mode, extra in attempts:
            try:
                reply = await self._call(messages=messages, max_tokens=4, temperature=0.0,
                                         **extra)
            except RequestRejected:
                continue
            text = (reply.choices[0].message.content or "") if reply.choices else ""
            if text.lstrip().startswith("5"):
                return mode
        return "emulate"

    def identity(self) -> dict[str, Any]:
        """The model as the server reports it (its /models entry: id, owner, and where a server
        says them, its weights' path and context length) and what the probe found."""
        caps = self._caps
        return {"backend": self.name, "model": self.model, "served": self.served,
                "parallel_n": caps.parallel_n, "logprobs": caps.logprobs,
                "prefill": self.prefill_mode}

    async def _probe_tokenize(self) -> str | None:
        """vLLM (and servers like it) answer ``POST /tokenize`` with a chat's token count."""
        base = str(self._client_options["base_url"])  # the query goes with every request
        url = base.rstrip("/").removesuffix("/v1") + "/tokenize"
        return url if await self._count(url, [{"role": "user", "content": "Hi"}], {}) else None

    async def _count(self, url: str, messages: list[dict[str, str]], extra: dict[str, Any]
                     ) -> int | None:
        body = {"model": self.model, "messages": messages, "add_generation_prompt": True, **extra}
        try:
            reply = await self.client.post(url, body=body, cast_to=httpx.Response)
            count = reply.json().get("count")
        except (self._openai.OpenAIError, ValueError, AttributeError):
            return None
        return count if isinstance(count, int) and count > 0 else None

    async def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        """The prompt's tokens as the server's tokenizer counts them, where it has an endpoint
        for it; None otherwise (the caller then bounds them)."""
        if self.tokenize_url is None:
            return None
        messages, extra = self._messages(request)
        return await self._count(self.tokenize_url, messages, extra.get("extra_body", {}))

    # -- generation ------------------------------------------------------------------------

    def _messages(self, request: GenerationRequest) -> tuple[list[dict[str, str]], dict]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        extra: dict[str, Any] = {}
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
            if self.prefill_mode == "vllm":
                extra["extra_body"] = {"continue_final_message": True,
                                       "add_generation_prompt": False}
            elif self.prefill_mode == "emulate":
                messages.append({"role": "user", "content": CONTINUE_INSTRUCTION})
        return messages, extra

    def _kwargs(self, request: GenerationRequest, n: int) -> dict[str, Any]:
        p = request.params
        messages, kwargs = self._messages(request)
        kwargs.update(messages=messages, max_tokens=p.max_tokens, temperature=p.temperature)
        if n > 1:
            kwargs["n"] = n
        if p.top_p < 1.0:
            kwargs["top_p"] = p.top_p
        if p.stop:
            kwargs["stop"] = list(p.stop[:4])
        if p.seed is not None:
            kwargs["seed"] = p.seed
        if p.logprobs is not None and self._caps.logprobs:
            kwargs["logprobs"] = True
            if p.logprobs > 0:
                kwargs["top_logprobs"] = min(p.logprobs, 20)
        body = dict(kwargs.pop("extra_body", {}))
        if p.top_k > 0:
            body["top_k"] = p.top_k
        if p.min_p > 0:
            body["min_p"] = p.min_p
        if body:
            kwargs["extra_body"] = body
        return kwargs

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        await self.probe()
        return await generate_each(requests, on_progress, self._one_request)

    async def _one_request(self, request: GenerationRequest, progress: ProgressCallback
                           ) -> list[Completion]:
        def done(index: int, completion: Completion) -> Completion:
            if request.on_sample is not None:
                request.on_sample(index, completion)
            return completion

        async def streamed(index: int) -> Completion:
            return done(index, await self._streamed(request, index, progress))

        async def single(index: int) -> Completion:
            [completion] = await self._batched(request.replace(params=_reseed(request, index)), 1)
            progress(completion.usage.completion_tokens)
            return done(index, completion)

        if request.monitor is not None:
            return list(await asyncio.gather(*(streamed(i) for i in range(request.n))))
        got: list[Completion] = []
        if request.n > 1 and self._caps.parallel_n:
            batch = (await self._batched(request, request.n))[:request.n]
            progress(sum(c.usage.completion_tokens for c in batch))
            got = [done(i, c) for i, c in enumerate(batch)]
        # samples one call did not return (n not honoured after all) are asked for one by one;
        # the calls already made keep their usage
        rest = await asyncio.gather(*(single(i) for i in range(len(got), request.n)))
        return got + list(rest)

    async def _batched(self, request: GenerationRequest, n: int) -> list[Completion]:
        started = time.monotonic()
        reply = await self._call(**self._kwargs(request, n))
        seconds = time.monotonic() - started
        usage = reply.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        total_completion = usage.completion_tokens if usage else 0
        choices = sorted(reply.choices, key=lambda c: c.index)
        counts = []
        for choice in choices:
            lp = choice.logprobs.content if choice.logprobs and choice.logprobs.content else None
            counts.append(len(lp) if lp else None)
        known = sum(c for c in counts if c is not None)
        unknown = [i for i, c in enumerate(counts) if c is None]
        share, extra = divmod(max(0, total_completion - known), max(1, len(unknown)))
        for k, i in enumerate(unknown):
            counts[i] = share + (1 if k < extra else 0)
        out = []
        for i, choice in enumerate(choices):
            first = i == 0
            out.append(Completion(
                text=choice.message.content or "",
                finish_reason="length" if choice.finish_reason == "length" else "stop",
                usage=Usage(prompt_tokens if first else 0, counts[i] or 0, 1 if first else 0,
                            seconds if first else 0.0),
                logprobs=_logprobs(choice.logprobs) if request.params.logprobs is not None
                else None,
                reasoning=_reasoning(choice.message),
                stop_sequence=_stop_sequence(choice, request.params.stop),
            ))
        return out

    async def _streamed(self, request: GenerationRequest, index: int,
                        progress: ProgressCallback) -> Completion:
        """One sample, streamed so that ``monitor`` can stop it mid-generation."""
        kwargs = self._kwargs(request.replace(params=_reseed(request, index)), 1)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        started = time.monotonic()
        text, reasoning, tokens = "", "", []
        finish, usage, chunks = "stop", None, 0
        stop_sequence: str | None = None
        async with self._semaphore:
            try:
                stream = await self.client.chat.completions.create(model=self.model, **kwargs)
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = chunk.usage
                        if not chunk.choices:
                            continue
                        choice = chunk.choices[0]
                        delta = choice.delta
                        reasoning += _reasoning(delta) or ""
                        piece = delta.content or ""
                        text += piece
                        new = _logprobs(choice.logprobs) or ()
                        tokens.extend(new)
                        if piece or new:  # not the role chunk, nor the finish chunk
                            chunks += 1
                            progress(max(1, len(new)))
                        if choice.finish_reason:
                            finish = "length" if choice.finish_reason == "length" else "stop"
                            stop_sequence = _stop_sequence(choice, request.params.stop)
                        if piece and request.monitor is not None and request.monitor(
                            index, text, tokens[-1] if tokens else None
                        ):
                            finish = "cancelled"
                            break  # leaving the stream closes the connection: the server stops
            except self._openai.OpenAIError as exc:
                raise self._translate(exc) from exc
        completion_tokens = len(tokens) or chunks
        prompt_tokens = 0
        if usage is not None:
            prompt_tokens = usage.prompt_tokens
            completion_tokens = usage.completion_tokens
        return Completion(
            text=text, finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens, completion_tokens, 1, time.monotonic() - started),
            logprobs=tuple(tokens) if request.params.logprobs is not None else None,
            reasoning=reasoning or None,
            stop_sequence=stop_sequence if finish == "stop" else None,
        )

    async def aclose(self) -> None:
        """Close the running loop's client (another loop's closes on that loop, when it shuts
        down: see :mod:`ponder.backends.loops`)."""
        await self._loops.aclose_current()


def _stop_sequence(choice: Any, stops: Sequence[str]) -> str | None:
    """The stop string that ended a choice. vLLM and SGLang say so in ``stop_reason`` (a string,
    a token id, or null for the end of the answer); when a server does not say, a stop at a
    request with stop strings is taken as the first of them (a wrong guess costs a step search
    one more, empty step)."""
    if choice.finish_reason != "stop" or not stops:
        return None
    extra = getattr(choice, "model_extra", None) or {}
    if "stop_reason" in extra:
        reason = extra["stop_reason"]
        return reason if isinstance(reason, str) and reason in stops else None
    return stops[0]


def _reseed(request: GenerationRequest, index: int):
    seed = request.params.seed
    return request.params if seed is None else request.params.replace(seed=seed + index)


def _reasoning(message: Any) -> str | None:
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if value is None and getattr(message, "model_extra", None):
            value = message.model_extra.get(name)
        if value:
            return str(value)
    return None


def _logprobs(logprobs: Any) -> tuple[TokenLogprob, ...] | None:
    if logprobs is None or not logprobs.content:
        return None
    return tuple(
        TokenLogprob(t.token, t.logprob,
                     tuple((a.token, a.logprob) for a in (t.top_logprobs or ())))
        for t in logprobs.content
    )


# -- a Chat Completions request forwarded as the client wrote it ------------------------------
# (tools, tool_choice, parallel_tool_calls, response_format and tool turns reach the server
# untouched; ``ponder serve`` uses these for its pass-through model)


async def forward_chat(backend: OpenAIBackend, body: dict[str, Any]) -> dict[str, Any]:
    """One Chat Completions request for ``backend``'s model, with the client's own fields; the
    server's reply as JSON (only the fields it sent)."""
    kwargs = {**body, "model": backend.model, "stream": False}
    async with backend._semaphore:
        try:
            reply = await backend.client.chat.completions.create(**kwargs)
        except backend._openai.OpenAIError as exc:
            raise backend._translate(exc) from exc
    return reply.model_dump(mode="json", exclude_unset=True)


async def forward_chat_stream(backend: OpenAIBackend, body: dict[str, Any]
                              ) -> AsyncIterator[dict[str, Any]]:
    """The same, streamed: each chunk as the server sent it (``tool_calls`` deltas intact)."""
    kwargs = {**body, "model": backend.model, "stream": True}
    async with backend._semaphore:
        try:
            stream = await backend.client.chat.completions.create(**kwargs)
            async with stream:
                async for chunk in stream:
                    yield chunk.model_dump(mode="json", exclude_unset=True)
        except backend._openai.OpenAIError as exc:
            raise backend._translate(exc) from exc
