"""A request's tools, tool choice, JSON format and conversation, checked and turned into the
chat problem that strategies reason over (:mod:`ponder.domains.chat`), and a run's winning action
turned back into an assistant message (``tool_calls`` or content)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ponder.domains.chat import chat_problem, decode_calls
from ponder.domains.schemas import SchemaRefused, check_budget
from ponder.domains.schemas import check_schema as check_client_schema
from ponder.server.errors import ApiError
from ponder.server.schemas import ChatCompletionRequest, ChatMessage
from ponder.types import Problem


def check_schema(schema: Any, param: str) -> None:
    """400 unless ``schema`` is a JSON schema this server can use with bounded work: an object,
    valid against its meta-schema, not too large written out or with its references expanded,
    every reference local, every pattern one RE2 runs (:func:`ponder.domains.schemas.check_schema`;
    the server calls this off its event loop)."""
    try:
        check_client_schema(schema)
    except SchemaRefused as exc:
        raise ApiError(400, f"Invalid schema for '{param}': {exc}", param=param,
                       code="invalid_schema") from None


def check_request(req: ChatCompletionRequest) -> None:
    """What pydantic cannot see: schemas that are schemas, one function per name, a tool choice
    that names a given function."""
    with check_budget():  # the request's schemas, checked within one budget
        _check_request(req)


def _check_request(req: ChatCompletionRequest) -> None:
    names: list[str] = []
    for i, tool in enumerate(req.tools or ()):
        fn = tool.function
        if fn.name in names:
            raise ApiError(400, f"Invalid 'tools': the function name '{fn.name}' appears twice",
                           param=f"tools.{i}.function.name", code="invalid_value")
        names.append(fn.name)
        if fn.parameters is not None:
            check_schema(fn.parameters, f"tools.{i}.function.parameters")
    choice = req.tool_choice
    if choice is not None and not req.tools and choice != "none":
        raise ApiError(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                       "'tools' are specified", param="tool_choice", code="invalid_value")
    if choice is not None and not isinstance(choice, str) and choice.function.name not in names:
        raise ApiError(400, f"Invalid value for 'tool_choice': no function named "
                       f"'{choice.function.name}' in 'tools'", param="tool_choice",
                       code="invalid_value")
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        if fmt.json_schema.schema_ is not None:
            check_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")


def tool_specs(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    return [{"name": t.function.name, "description": t.function.description,
             "parameters": t.function.parameters} for t in req.tools or ()]


def choice_of(req: ChatCompletionRequest) -> str:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.function.name


def format_of(req: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    assert fmt.json_schema is not None
    return {"type": "json_schema", "name": fmt.json_schema.name,
            "schema": fmt.json_schema.schema_, "strict": bool(fmt.json_schema.strict)}


def turn_of(m: ChatMessage) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": "user" if m.role not in ("assistant", "tool") else m.role,
                            "content": m.text()}
    if m.tool_calls:
        turn["tool_calls"] = [{"id": c.id, "name": c.function.name,
                               "arguments": c.function.arguments} for c in m.tool_calls]
    if m.tool_call_id:
        turn["tool_call_id"] = m.tool_call_id
    return turn


def problem_from(req: ChatCompletionRequest) -> Problem:
    """The problem a request poses. One user message and no tools or format: the question alone
    (the math domain reads it, as ``ponder ask`` does). Otherwise the whole conversation in order,
    with the tools and the format, as a chat problem."""
    messages = req.messages
    system = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer"))
    turns = [m for m in messages if m.role not in ("system", "developer")]
    fmt = format_of(req)
    tools = tool_specs(req) if choice_of(req) != "none" else []
    if len(turns) == 1 and turns[0].role == "user" and not tools and fmt is None:
        return Problem(turns[0].text(), system=system or None)
    return chat_problem([turn_of(m) for m in turns], system=system or None, tools=tools,
                        tool_choice=choice_of(req),
                        parallel_tool_calls=req.parallel_tool_calls is not False,
                        response_format=fmt)


def has_tools(problem: Problem) -> bool:
    return bool(problem.metadata.get("tools"))


def calls_of(problem: Problem, answer: str | None) -> list[dict[str, Any]] | None:
    """The calls a run's answer makes, as Chat Completions ``tool_calls`` (None: it answers in
    text, or the request had no tools)."""
    if not has_tools(problem):
        return None
    calls = decode_calls(answer)
    if not calls:
        return None
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"],
                          "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in calls]

