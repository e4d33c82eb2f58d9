"""The ``chat`` domain: a whole conversation (system, earlier turns, tool calls and their
results), with tools the model may call and a JSON format its answer may have to follow.

A problem is a chat problem when its ``metadata`` holds a ``conversation`` (a list of turns as
plain dicts: ``role`` user/assistant/tool, ``content``, an assistant's ``tool_calls`` as
``{"id", "name", "arguments"}`` with the arguments a JSON string, a tool result's
``tool_call_id``), optionally with ``tools`` (``{"name", "description", "parameters"}``),
``tool_choice`` (``auto``, ``none``, ``required`` or a function's name), ``parallel_tool_calls``
and ``response_format`` (``{"type": "json_object"}`` or ``{"type": "json_schema", "schema"}``).

Every backend reads the conversation as plain messages: the tools are described in the system
prompt in the Hermes / Qwen format (``<tools>`` signatures, calls written as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``), earlier calls are written back the
same way and tool results come back as ``<tool_response>`` user turns.

A candidate's answer is its **action**: the calls it makes (:data:`CALLS` and a JSON list), or
its text answer (read as the math domain reads it; the whole text when it states none), or, under
a JSON format, the JSON value it ends with. A call to an unknown function, arguments that do not
validate against the function's parameters, text where a call is required, or JSON that does not
parse or validate leave the candidate without an answer: it drops out of the vote. Actions are
the same when their calls name the same functions with JSON-equal arguments (key order, number
forms and whitespace do not matter), or their JSON values are equal, or their text answers are
equivalent.

>>> p = chat_problem([{"role": "user", "content": "Weather in Paris?"}],
...                  tools=[{"name": "weather", "parameters": {"type": "object"}}])
>>> a = CHAT.extract(p, '<tool_call>{"name": "weather", "arguments": {"city": "Paris", "n": 1}}'
...                  '</tool_call>')
>>> b = CHAT.extract(p, '<tool_call>{"arguments": {"n": 1.0, "city":"Paris"}, "name": "weather"}'
...                  '</tool_call>')
>>> action_key(a) == action_key(b)
True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ponder.domains.answers import equivalent, extract_answer
from ponder.domains.grammar import json_answer_constraint, tool_constraint
from ponder.domains.schemas import first_validation_error, validation_error
from ponder.domains.vote import cluster_ids
from ponder.sandbox import Sandbox
from ponder.types import Constraint, Message, Problem

CALLS = "tool_calls: "  # an answer that is a list of calls starts with this
MAX_CALLS = 64  # calls in one answer, at most (more is not an action anyone asked for)
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)

TOOLS_PROMPT = """# Tools

You may call one or more functions to help with the user's request.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{signatures}
</tools>

For each function call, return a JSON object with the function name and arguments within
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>
{choice}"""

CHOICE = {
    "auto": "Call a function when you need its result; when you can answer, answer directly.",
    "required": "You must call a function now.",
}
FORMAT_PROMPT = ("Give your final answer as one JSON value in a ```json block, and nothing "
                 "after it.")


def chat_problem(conversation: Sequence[Mapping[str, Any]], *, system: str | None = None,
                 question: str | None = None, tools: Sequence[Mapping[str, Any]] = (),
                 tool_choice: str = "auto", parallel_tool_calls: bool = True,
                 response_format: Mapping[str, Any] | None = None) -> Problem:
    """A chat problem. ``question``: how the conversation reads as one text (default: the
    turns, one per line), for what reads a problem as text (judges, step scorers, pages)."""
    turns = [dict(t) for t in conversation]
    meta: dict[str, Any] = {"conversation": turns}
    if tools:
        meta.update(tools=[dict(t) for t in tools], tool_choice=tool_choice,
                    parallel_tool_calls=parallel_tool_calls)
    if response_format and response_format.get("type") in ("json_object", "json_schema"):
        meta["response_format"] = dict(response_format)
    return Problem(question if question is not None else flatten(turns), system=system,
                   metadata=meta)


def is_chat_problem(problem: Problem) -> bool:
    return "conversation" in problem.metadata


def flatten(turns: Sequence[Mapping[str, Any]]) -> str:
    """The conversation as one text: the last user message alone when it is the only turn."""
    if len(turns) == 1 and turns[0].get("role") == "user":
        return str(turns[0].get("content") or "")
    lines = []
    for t in turns:
        text = str(t.get("content") or "")
        calls = "".join(f" [calls {c['name']}({c['arguments']})]"
                        for c in t.get("tool_calls") or ())
        lines.append(f"{t.get('role')}: {text}{calls}".rstrip())
    return "\n".join(lines)


# -- JSON values -----------------------------------------------------------------------------

def _normal(value: Any) -> Any:
    """A JSON value with numbers in one form (1.0 and 1e0 are 1)."""
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def canonical(value: Any) -> str:
    """The one text of a JSON value: keys sorted, no spaces, numbers in one form."""
    return json.dumps(_normal(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return _NOTHING


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_NOTHING = object()


def last_json(text: str) -> Any:
    """The JSON value a text ends with: its last ```json block, else the whole text, else the
    last object or array that parses (``_NOTHING`` when there is none)."""
    for block in reversed(_FENCE.findall(text)):
        value = _loads(block.strip())
        if value is not _NOTHING:
            return value
    value = _loads(text.strip())
    if value is not _NOTHING:
        return value
    decoder = json.JSONDecoder()
    for i in reversed([m.start() for m in re.finditer(r"[{\[]", text)]):
        try:
            value, _ = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            continue
        return value
    return _NOTHING


def schema_errors(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not validate against ``schema`` (None: it does). The schema is a
    client's and the value a model's: the work is bounded (:mod:`ponder.domains.schemas`), and a
    schema too costly for this value is a reason too."""
    return validation_error(value, schema)


# -- tool calls ------------------------------------------------------------------------------

def parse_calls(text: str) -> list[dict[str, Any]] | None:
    """The calls a text makes, as ``{"name", "arguments"}`` (arguments a dict); [] when it
    makes none; None when it tries to and one cannot be read. Calls are ``<tool_call>`` blocks,
    else the JSON objects in the text (fenced or not) that are ``{"name": ..., "arguments":
    {...}}``."""
    blocks = _TOOL_CALL.findall(text)
    if not blocks:  # small models often write calls as bare or fenced JSON objects
        blocks = _bare_calls(text)
        if not blocks:
            return []
    calls = []
    for block in blocks:
        value = _loads(block)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return None
        args = value.get("arguments", value.get("parameters", {}))
        if isinstance(args, str):
            args = _loads(args) if args.strip() else {}
        if not isinstance(args, dict):
            return None
        calls.append({"name": value["name"], "arguments": args})
    return calls


def _is_call(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"name", "arguments"}


def _bare_calls(text: str) -> list[str]:
    """The JSON objects in a text, left to right, that are ``{"name", "arguments"}``."""
    decoder = json.JSONDecoder()
    found, i = [], text.find("{")
    while i >= 0:
        try:
            value, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            i = text.find("{", i + 1)
            continue
        if _is_call(value):
            found.append(text[i:end])
            i = text.find("{", end)
        else:
            i = text.find("{", i + 1)
    return found


def without_calls(text: str) -> str:
    """The text with its ``<tool_call>`` blocks taken out."""
    return _TOOL_CALL.sub("", text).strip()


def encode_calls(calls: Sequence[Mapping[str, Any]]) -> str:
    return CALLS + json.dumps([{"name": c["name"], "arguments": c["arguments"]} for c in calls],
                              ensure_ascii=False)


def decode_calls(answer: str | None) -> list[dict[str, Any]] | None:
    """The calls an action answer makes (arguments as dicts); None for a text answer."""
    if answer is None or not answer.startswith(CALLS):
        return None
    value = _loads(answer[len(CALLS):])
    return value if isinstance(value, list) else None


def action_key(answer: str | None) -> str | None:
    """What makes two call actions the same (None for a text answer): the functions and their
    JSON-equal arguments, in any order."""
    calls = decode_calls(answer)
    if calls is None:
        return None
    return CALLS + canonical(sorted(canonical(c) for c in calls))


# -- the domain ------------------------------------------------------------------------------

class ChatDomain:
    name: ClassVar[str] = "chat"
    default_verifier: ClassVar[str | None] = None

    def messages(self, problem: Problem, system: str, default_system: str) -> list[Message]:
        meta = problem.metadata
        head = [problem.system or system]
        tools = _active_tools(problem)
        if tools:
            head.append(tools_prompt(tools, meta.get("tool_choice", "auto")))
        if meta.get("response_format"):
            head.append(format_prompt(meta["response_format"]))
        out = [Message("system", "\n\n".join(h for h in head if h))] if any(head) else []
        return out + render_turns(meta["conversation"])

    def extract(self, problem: Problem, text: str) -> str | None:
        meta = problem.metadata
        tools = _active_tools(problem)
        if tools:
            calls = parse_calls(text)
            if calls is None:
                return None
            if calls:
                return _checked_calls(calls, tools, meta)
            if meta.get("tool_choice", "auto") != "auto":
                return None  # a call was required
        fmt = meta.get("response_format")
        if fmt:
            value = last_json(text)
            if value is _NOTHING or (fmt.get("type") == "json_object"
                                     and not isinstance(value, dict)):
                return None
            if fmt.get("schema") is not None and schema_errors(value, fmt["schema"]):
                return None
            return json.dumps(value, ensure_ascii=False)
        body = without_calls(text)
        return extract_answer(body) or body or None

    def constraint(self, problem: Problem) -> Constraint | None:
        """The grammar a reply decodes under where the backend can: calls in their tools'
        shape (from the first token when a call is required, else after ``<tool_call>``), or,
        without tools, a JSON answer in its format's shape after its ``json`` fence."""
        meta = problem.metadata
        tools = _active_tools(problem)
        if tools:
            return tool_constraint(tools, required=meta.get("tool_choice", "auto") != "auto",
                                   parallel=bool(meta.get("parallel_tool_calls", True)))
        fmt = meta.get("response_format")
        if fmt:
            schema = fmt.get("schema")
            return json_answer_constraint(schema if schema is not None else {"type": "object"})
        return None

    def posed(self, problem: Problem) -> tuple[Message, ...]:
        """The problem's own turns as a request carries them (the system message aside)."""
        return tuple(render_turns(problem.metadata["conversation"]))

    async def signatures(self, problem: Problem, answers: Sequence[str | None],
                         sandbox: Sandbox) -> list[str | None] | None:
        json_answers = bool(problem.metadata.get("response_format"))
        texts = [None if a is None or action_key(a) is not None else a for a in answers]
        text_labels = [None] * len(answers) if json_answers else cluster_ids(texts)
        keys: list[str | None] = []
        for answer, label in zip(answers, text_labels, strict=True):
            if answer is None:
                keys.append(None)
            elif action_key(answer) is not None:
                keys.append(action_key(answer))
            elif json_answers:
                keys.append("json: " + canonical(json.loads(answer)))
            else:
                keys.append(f"text: {label}")
        return keys

    async def grade(self, problem: Problem, answers: Sequence[str | None],
                    sandbox: Sandbox) -> list[bool]:
        gold = problem.answer
        if gold is not None and decode_calls(gold) is not None:
            return [a is not None and action_key(a) == action_key(gold) for a in answers]
        return [equivalent(a, gold) for a in answers]


CHAT = ChatDomain()


def _active_tools(problem: Problem) -> list[dict[str, Any]]:
    meta = problem.metadata
    if meta.get("tool_choice", "auto") == "none":
        return []
    tools = list(meta.get("tools") or ())
    forced = meta.get("tool_choice")
    if forced not in (None, "auto", "required"):
        tools = [t for t in tools if t["name"] == forced]
    return tools


def _checked_calls(calls: list[dict[str, Any]], tools: Sequence[Mapping[str, Any]],
                   meta: Mapping[str, Any]) -> str | None:
    """The calls as an answer; None when one names an unknown function, its arguments do not
    validate, or there are more than :data:`MAX_CALLS`. Without parallel calls, the first call
    alone. A candidate's calls are validated within one budget, not one each."""
    if not meta.get("parallel_tool_calls", True):
        calls = calls[:1]
    if len(calls) > MAX_CALLS:
        return None
    by_name = {t["name"]: t for t in tools}
    checks = []
    for call in calls:
        tool = by_name.get(call["name"])
        if tool is None:
            return None
        if tool.get("parameters"):
            checks.append((call["arguments"], tool["parameters"]))
    if checks and first_validation_error(checks) is not None:
        return None
    return encode_calls(calls)


def tools_prompt(tools: Sequence[Mapping[str, Any]], choice: str) -> str:
    signatures = "\n".join(json.dumps({"type": "function", "function": {
        "name": t["name"], **({"description": t["description"]} if t.get("description") else {}),
        "parameters": t.get("parameters") or {"type": "object", "properties": {}}}},
        ensure_ascii=False) for t in tools)
    how = CHOICE.get(choice, f"You must call the function {choice} now.")
    return TOOLS_PROMPT.format(signatures=signatures, choice=how)


def format_prompt(fmt: Mapping[str, Any]) -> str:
    if fmt.get("schema") is not None:
        schema = json.dumps(fmt["schema"], ensure_ascii=False)
        return f"{FORMAT_PROMPT} It must validate against this JSON schema:\n{schema}"
    return FORMAT_PROMPT.replace("JSON value", "JSON object")


def render_turns(turns: Sequence[Mapping[str, Any]]) -> list[Message]:
    """The turns as plain messages: an assistant's calls as ``<tool_call>`` blocks after its
    text, consecutive tool results as one user turn of ``<tool_response>`` blocks."""
    out: list[Message] = []
    for turn in turns:
        role, text = turn.get("role"), str(turn.get("content") or "")
        if role == "tool":
            block = f"<tool_response>\n{text}\n</tool_response>"
            if out and out[-1].role == "user" and out[-1].content.startswith("<tool_response>"):
                out[-1] = Message("user", f"{out[-1].content}\n{block}")
            else:
                out.append(Message("user", block))
        elif role == "assistant":
            calls = [f'<tool_call>\n{{"name": {json.dumps(c["name"])}, "arguments": '
                     f'{c.get("arguments") or "{}"}}}\n</tool_call>'
                     for c in turn.get("tool_calls") or ()]
            out.append(Message("assistant", "\n".join([text, *calls]).strip()))
        else:
            out.append(Message("user", text))
    return out


def read_reply(problem: Problem, text: str) -> str:
    """A single reply read as an answer (a pass-through, no vote): the calls it makes when they
    are valid, else under a JSON format the JSON value it ends with, else its text (calls
    taken out)."""
    if _active_tools(problem) and parse_calls(text):
        checked = CHAT.extract(problem, text)
        if checked is not None and decode_calls(checked):
            return checked
    if problem.metadata.get("response_format"):
        value = last_json(text)
        if value is not _NOTHING:
            return json.dumps(value, ensure_ascii=False)
    return without_calls(text) if _active_tools(problem) else text
