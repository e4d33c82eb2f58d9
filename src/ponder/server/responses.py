"""``POST /v1/responses``: the Responses API over the same plans as Chat Completions.

A request is read (:class:`ResponsesRequest`) and translated into the Chat Completions request
it means — ``instructions`` the system message, ``input`` items the turns (``function_call``
items an assistant's calls, ``function_call_output`` items tool results), ``reasoning.effort``
the effort, ``text.format`` the response format, ``max_output_tokens`` the cap on the tokens the
whole search generates (:mod:`ponder.server.plan`) — so it runs exactly as a chat request
would. The chat answer is then written as a ``response`` object: a ``reasoning`` item (the
search: candidates, votes, what won; the winning chain as its content), then a ``message`` or
one ``function_call`` item per call, and usage with ``output_tokens_details.reasoning_tokens``.
An answer cut by a token cap makes the response ``incomplete``
(``incomplete_details.reason: max_output_tokens``).

The items a response returns are accepted back as ``input`` (the SDK's ``input +=
response.output``): ``reasoning`` items are skipped, ``message`` items with ``output_text``
parts and ``function_call`` items are the assistant's turns. Streamed (:func:`response_events`),
the search is told as it runs, in the reasoning item's summary.

Responses are not stored: ``previous_response_id`` is refused (400); send the whole conversation
as ``input`` items instead.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ponder.core.context import EventSink
from ponder.server.errors import ApiError, validation_error
from ponder.server.metrics import Metrics
from ponder.server.narrator import Narrator
from ponder.server.plan import Plan
from ponder.server.schemas import FUNCTION_NAME, ChatCompletionRequest, PonderOptions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reasoning(_Strict):
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextOptions(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class NamedFunction(_Strict):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)


class ResponsesRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[Any] = Field(min_length=1)
    instructions: str | None = None
    reasoning: Reasoning | None = None
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: bool = False
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    ponder: PonderOptions | None = None


def read_request(data: dict[str, Any]) -> ResponsesRequest:
    try:
        req = ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if req.previous_response_id is not None:
        raise ApiError(400, "'previous_response_id' is not supported: this server does not "
                       "store responses; send the whole conversation as 'input' items",
                       param="previous_response_id", code="unsupported_parameter")
    if req.text and req.text.format and req.text.format.type == "json_schema" and (
            req.text.format.name is None or req.text.format.schema_ is None):
        raise ApiError(400, "Invalid 'text.format': type 'json_schema' needs 'name' and "
                       "'schema'", param="text.format", code="invalid_value")
    return req


def _text(content: Any, where: str) -> str:
    """An item's content as text: a string, or its input_text / output_text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"Invalid '{where}.content': a string or a list of content parts",
                       param=f"{where}.content", code="invalid_value")
    texts = []
    for k, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ApiError(400, f"Invalid '{where}.content.{k}': a content part object with a "
                           "'type'", param=f"{where}.content.{k}", code="invalid_value")
        if part["type"] in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise ApiError(400, f"Invalid '{where}.content.{k}.text': a string",
                               param=f"{where}.content.{k}.text", code="invalid_value")
            texts.append(part["text"])
    return "".join(texts)


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (key != "arguments" and not value):
        raise ApiError(400, f"Missing or invalid '{where}.{key}': a string",
                       param=f"{where}.{key}", code="invalid_value")
    return value


def messages_of(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The chat messages the instructions and input items mean."""
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        return [*messages, {"role": "user", "content": req.input}]
    for i, item in enumerate(req.input):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise ApiError(400, f"Invalid '{where}': an input item object", param=where,
                           code="invalid_value")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise ApiError(400, f"Invalid '{where}.role': one of user, assistant, system, "
                               "developer", param=f"{where}.role", code="invalid_value")
            messages.append({"role": role, "content": _text(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": _string(item, "call_id", where), "type": "function",
                    "function": {"name": _string(item, "name", where),
                                 "arguments": _string(item, "arguments", where)}}
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where),
                             "content": output if isinstance(output, str)
                             else _text(output, where)})
        elif kind == "reasoning":
            continue  # an earlier response's reasoning, sent back: nothing to add
        else:
            raise ApiError(400, f"Invalid '{where}.type': {str(kind)[:64]!r} is not supported "
                           "(message, function_call, function_call_output, reasoning)",
                           param=f"{where}.type", code="invalid_value")
    return messages


def chat_request(req: ResponsesRequest) -> ChatCompletionRequest:
    """The Chat Completions request a Responses request means."""
    body: dict[str, Any] = {"model": req.model, "messages": messages_of(req)}
    if req.reasoning and req.reasoning.effort:
        body["reasoning_effort"] = req.reasoning.effort
    if req.tools:
        body["tools"] = [{"type": "function", "function": t.model_dump(exclude_none=True,
                                                                        exclude={"type"})}
                         for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = (req.tool_choice if isinstance(req.tool_choice, str) else
                               {"type": "function", "function": {"name": req.tool_choice.name}})
    fmt = req.text.format if req.text else None
    if fmt is not None and fmt.type != "text":
        body["response_format"] = {"type": fmt.type}
        if fmt.type == "json_schema":
            body["response_format"]["json_schema"] = {
                "name": fmt.name, "schema": fmt.schema_,
                **({"strict": fmt.strict} if fmt.strict is not None else {})}
    for key in ("parallel_tool_calls", "temperature", "top_p", "user", "metadata"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.max_output_tokens is not None:
        body["max_completion_tokens"] = req.max_output_tokens
    if req.ponder is not None:
        body["ponder"] = req.ponder.model_dump(exclude_none=True)
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise _renamed(validation_error(exc)) from None


def _renamed(error: ApiError) -> ApiError:
    """A chat request's error in the Responses request's words."""
    words = {"messages": "input", "response_format.json_schema": "text.format",
             "response_format": "text.format", "max_completion_tokens": "max_output_tokens"}
    for old, new in words.items():
        error.message = error.message.replace(f"'{old}", f"'{new}")
        if error.param and error.param.startswith(old):
            error.param = new + error.param[len(old):]
    return error


def response_head(req: ResponsesRequest) -> dict[str, Any]:
    """A new response's identity (``id``, ``created_at``): the same from its first stream event to
    its last."""
    return {"id": f"resp_{uuid.uuid4().hex}", "created_at": int(time.time())}


def response_body(req: ResponsesRequest, chat: dict[str, Any], summary: str | None,
                  chain: str | None, *, head: dict[str, Any] | None = None,
                  reasoning_id: str | None = None, narration: str | None = None
                  ) -> dict[str, Any]:
    """The ``response`` object for a chat completion body (its first choice). ``summary``: the
    account of the search; ``chain``: the winning chain (pass-through: the model's reasoning);
    ``narration``: what a stream told of the search while it ran (the summary's first part).
    ``head`` and ``reasoning_id``: the identities a stream announced. An answer cut by a token cap
    (``finish_reason: length``) makes the response ``incomplete`` (``incomplete_details.reason:
    max_output_tokens``) and its message item ``incomplete``."""
    choice = chat["choices"][0]
    message = choice.get("message") or {}
    length = choice.get("finish_reason") == "length"
    output: list[dict[str, Any]] = []
    parts = [text for text in (narration, summary) if text]
    if parts or chain:
        item: dict[str, Any] = {"type": "reasoning", "id": reasoning_id or f"rs_{uuid.uuid4().hex}",
                                "summary": [{"type": "summary_text", "text": text}
                                            for text in parts], "status": "completed"}
        if chain:
            item["content"] = [{"type": "reasoning_text", "text": chain}]
        output.append(item)
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        output.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex}",
                       "call_id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                       "name": fn.get("name", ""), "arguments": fn.get("arguments", ""),
                       "status": "completed"})
    if not message.get("tool_calls"):
        output.append({"type": "message", "id": f"msg_{uuid.uuid4().hex}", "role": "assistant",
                       "status": "incomplete" if length else "completed",
                       "content": [{"type": "output_text", "text": message.get("content") or "",
                                    "annotations": [], "logprobs": []}]})
    usage = chat.get("usage") or {}
    reasoning_tokens = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    body: dict[str, Any] = {
        **shell(req, head or response_head(req)), "output": output,
        "status": "incomplete" if length else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if length else None,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                  "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": usage.get("completion_tokens", 0),
                  "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                  "total_tokens": usage.get("total_tokens", 0)},
    }
    if "ponder" in chat:
        body["ponder"] = chat["ponder"][0] if isinstance(chat["ponder"], list) else chat["ponder"]
    return body


def shell(req: ResponsesRequest, head: dict[str, Any]) -> dict[str, Any]:
    """A response in progress: what the request asked, no output yet."""
    fmt = req.text.format if req.text and req.text.format else None
    return {
        "id": head["id"], "object": "response", "created_at": head["created_at"],
        "status": "in_progress", "error": None, "incomplete_details": None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "model": req.model, "output": [],
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None,
                      "summary": req.reasoning.summary if req.reasoning else None},
        "store": False, "temperature": req.temperature, "top_p": req.top_p,
        "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt
                 else {"type": "text"}},
        "tool_choice": (req.tool_choice if isinstance(req.tool_choice, str) or
                        req.tool_choice is None else req.tool_choice.model_dump())
        or "auto",
        "tools": [t.model_dump(exclude_none=True) for t in req.tools or ()],
        "truncation": "disabled", "metadata": req.metadata or {}, "usage": None,
    }


class Events:
    """A response's stream events, numbered in the order they are written, in the order the
    Responses API sends them and the ``openai`` SDK's ``responses.stream()`` accumulates them:
    ``response.created``, ``response.in_progress``; per output item ``output_item.added``, its
    part and delta events, ``output_item.done``; then ``response.completed``, or, for a response
    cut by a token cap, ``response.incomplete`` (as OpenAI ends one), or ``response.failed``."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(body)}\n\n".encode()

    def opening(self, response: dict[str, Any]) -> Iterator[bytes]:
        yield self("response.created", response=response)
        yield self("response.in_progress", response=response)

    def summary_part(self, item_id: str, index: int, text: str | None = None) -> Iterator[bytes]:
        """A summary part of the reasoning item (always output 0) opened, and (with its
        ``text``) written whole and closed."""
        ids = {"item_id": item_id, "output_index": 0, "summary_index": index}
        yield self("response.reasoning_summary_part.added", **ids,
                   part={"type": "summary_text", "text": ""})
        if text is not None:
            yield self.summary_delta(item_id, index, text)
            yield from self.summary_done(item_id, index, text)

    def summary_delta(self, item_id: str, index: int, delta: str) -> bytes:
        return self("response.reasoning_summary_text.delta", item_id=item_id, output_index=0,
                    summary_index=index, delta=delta)

    def summary_done(self, item_id: str, index: int, text: str) -> Iterator[bytes]:
        ids = {"item_id": item_id, "output_index": 0, "summary_index": index}
        yield self("response.reasoning_summary_text.done", **ids, text=text)
        yield self("response.reasoning_summary_part.done", **ids,
                   part={"type": "summary_text", "text": text})

    def item(self, index: int, item: dict[str, Any], *, opened: int = -1) -> Iterator[bytes]:
        """An output item's events; a reasoning item whose first ``opened + 1`` summary parts
        were already streamed gets the rest of its events."""
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            if opened < 0:
                yield self("response.output_item.added", output_index=index,
                           item={**item, "summary": [], "status": "in_progress"})
            for k, part in enumerate(item["summary"]):
                if k > opened:
                    yield from self.summary_part(item["id"], k, part["text"])
        elif item["type"] == "function_call":
            yield self("response.output_item.added", output_index=index,
                       item={**item, "arguments": "", "status": "in_progress"})
            yield self("response.function_call_arguments.delta", **ids, delta=item["arguments"])
            yield self("response.function_call_arguments.done", **ids, name=item["name"],
                       arguments=item["arguments"])
        else:
            yield self("response.output_item.added", output_index=index,
                       item={**item, "content": [], "status": "in_progress"})
            for k, part in enumerate(item["content"]):
                place = {**ids, "content_index": k}
                yield self("response.content_part.added", **place, part={**part, "text": ""})
                yield self("response.output_text.delta", **place, delta=part["text"],
                           logprobs=[])
                yield self("response.output_text.done", **place, text=part["text"],
                           logprobs=[])
                yield self("response.content_part.done", **place, part=part)
        yield self("response.output_item.done", output_index=index, item=item)

    def ending(self, response: dict[str, Any]) -> bytes:
        kind = ("response.completed" if response["status"] == "completed"
                else "response.incomplete")
        return self(kind, response=response)

    def failure(self, response: dict[str, Any], error: ApiError) -> bytes:
        failed = {**response, "status": "failed",
                  "error": {"code": error.code or "server_error", "message": error.message}}
        return self("response.failed", response=failed)


# What a streamed run answers with: the chat completion body (one choice), the account of its
# search and its winning chain. It is given the event sink of a search (None: no search).
Answer = Callable[[EventSink | None], Awaitable[tuple[dict[str, Any], str | None, str | None]]]


async def response_events(req: ResponsesRequest, plan: Plan, answer: Answer, metrics: Metrics,
                          started: float) -> AsyncIterator[bytes]:
    """A streamed response: ``response.created`` and ``response.in_progress`` at once; under a
    strategy, its ``reasoning`` item opened at once and the search told as it runs, one summary
    delta per event that matters (each call's samples, each finished candidate with its answer
    and the votes so far), as the chat stream's reasoning tells it; once the run ends, the rest
    of the items and the terminal event (:class:`Events`). A run that fails after the stream
    began ends it with ``response.failed``; a client that disconnects cancels the run."""
    head = response_head(req)
    events = Events()
    opened = shell(req, head)
    search = plan.strategy is not None
    reasoning_id = f"rs_{uuid.uuid4().hex}"
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    narrator = Narrator(plan.problem)
    told: list[str] = []

    def sink(event: str, details: dict[str, Any]) -> None:
        if event != "text":  # a summary tells of candidates, not of every token
            loop.call_soon_threadsafe(queue.put_nowait, (event, details))

    work = asyncio.create_task(answer(sink if search else None))
    status = 200
    try:
        yield joined(events.opening(opened))
        if search:
            yield events("response.output_item.added", output_index=0,
                         item={"type": "reasoning", "id": reasoning_id, "summary": [],
                               "status": "in_progress"})
            yield joined(events.summary_part(reasoning_id, 0))
            told.append(f"Thinking with {plan.strategy.name}…\n")
            yield events.summary_delta(reasoning_id, 0, told[-1])
        getter: asyncio.Task | None = None
        while search:
            getter = getter or asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                text = narrator(*getter.result())
                getter = None
                if text:
                    told.append(text)
                    yield events.summary_delta(reasoning_id, 0, text)
            elif not queue.empty():
                continue  # what the search said before it finished, first
            else:
                if getter is not None:
                    getter.cancel()
                break
        try:
            chat, summary, chain = await work
        except ApiError as exc:
            status = exc.status
            yield events.failure(opened, exc)
            return
        narration = "".join(told) if search else None
        body = response_body(req, chat, summary, chain, head=head, reasoning_id=reasoning_id,
                             narration=narration)
        for index, item in enumerate(body["output"]):
            if search and index == 0:
                yield joined(events.summary_done(reasoning_id, 0, narration or ""))
                yield joined(events.item(0, item, opened=0))
            else:
                yield joined(events.item(index, item))
        yield events.ending(body)
    except (asyncio.CancelledError, GeneratorExit):
        status = 499  # the client went away: stop its work now
        raise
    finally:
        if not work.done():
            work.cancel()
            try:
                await work
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already reported
                pass
        metrics.observe(status, time.monotonic() - started if status == 200 else None)


def joined(chunks: Iterator[bytes]) -> bytes:
    """Several events as one write."""
    return b"".join(chunks)
