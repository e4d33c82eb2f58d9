"""Grammars for constrained decoding: a JSON schema, a tool call and a JSON answer as GBNF, the
grammar language of llama.cpp (both of ponder's llama.cpp engines read it).

The grammar is a **shape**, not the whole schema: it holds what decides whether a value can be
read at all (JSON syntax, types, the properties an object must have and in which order, enums,
constants, ``anyOf``, local ``$ref`` s), and leaves what is costly or unbounded to write as a
grammar (``pattern``, ``format``, lengths, ranges, item counts, ``allOf``) to the validation
every candidate gets afterwards (:mod:`ponder.domains.schemas`). Every value the grammar allows
parses; one that breaks a relaxed keyword still drops out of the vote, as it did unconstrained.

Schemas come from clients: the grammar grows linearly with the schema (every composite
expression is a rule of its own, referred to by name, so nesting never copies a child's text;
each ``$ref`` target is one rule, however often it is referred to; no repetition is expanded),
the schema was already bounded by :func:`ponder.domains.schemas.check_schema`, and conversion
stops once the rules pass :data:`MAX_GRAMMAR_CHARS`, falling back to "any JSON value" of the
schema's top type. Keywords a grammar would have to intersect (a ``$ref`` or ``anyOf`` beside
``properties``, several ``allOf`` parts, a required property that is not declared) give the
generic type too, never a grammar that no valid value matches.

>>> print("\\n".join(schema_grammar({"type": "object", "properties": {"x": {"type": "integer"}},
...                                  "required": ["x"]}).splitlines()[:3]))
root ::= r2-root
r1-root-x ::= "\\"x\\"" ws ":" ws integer
r2-root ::= "{" ws r1-root-x ws "}"
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.domains.schemas import resolve
from ponder.types import Constraint

MAX_GRAMMAR_CHARS = 65_536  # a grammar longer than this falls back to "any JSON value"
MAX_SCHEMA_DEPTH = 64  # nested schemas followed (deeper ones allow any value)

# The JSON primitives every grammar may use (the same for all schemas). Strings: any JSON string
# (escapes included); numbers: JSON numbers with at most 16 digits in each part, so a model that
# starts a long run of digits has to stop; whitespace: a space or a newline and an indent.
PRIMITIVES = r'''value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )
number ::= integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
boolean ::= "true" | "false"
null ::= "null"
ws ::= ( " " | "\n" [ \t]{0,20} )?'''
_BASE_RULES = {"value", "object", "array", "string", "integer", "number", "boolean", "null", "ws"}
_TYPE_RULE = {"object": "object", "array": "array", "string": "string", "integer": "integer",
              "number": "number", "boolean": "boolean", "null": "null"}


def literal(text: str) -> str:
    """``text`` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_literal(value: Any) -> str:
    """One JSON value as the exact text the grammar allows for it (compact, as json writes it,
    with a space after ``:`` and ``,`` the way models write JSON; a lone surrogate, which no
    UTF-8 text holds, as its ``\\u`` escape)."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, separators=(", ", ": "))
    return literal(text)


_COMBINERS = ("$ref", "anyOf", "oneOf", "allOf")
# keywords that shape a value: beside a combiner, the grammar would have to intersect them
_SHAPING = ("properties", "required", "additionalProperties", "items", "prefixItems", "enum",
            "const", "minProperties", "patternProperties", "dependentRequired",
            "dependentSchemas", "unevaluatedProperties", "if")
_NAME = re.compile(r"[a-z][a-z0-9-]*")


class _TooLarge(Exception):
    """The rules passed :data:`MAX_GRAMMAR_CHARS`: the caller falls back."""


class _Converter:
    """Schema nodes to rules. Every composite expression is a rule of its own, referred to by
    name, so the text grows with the schema's nodes, never with its nesting; a ``$ref`` target is
    one rule, shared by every reference. Where a schema combines keywords a grammar cannot
    intersect (a ``$ref`` or ``anyOf`` beside ``properties``, several ``allOf`` parts, a required
    property that is not declared), the value's generic type stands in: the grammar stays a
    superset of the shape, and validation does the rest."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.rules: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        self.pending: dict[str, bool] = {}  # refs being converted: has a character been read?
        self.count = 0
        self.size = 0

    def _new(self, hint: str) -> str:
        self.count += 1
        return f"r{self.count}-{re.sub(r'[^a-zA-Z0-9]+', '-', hint)[:24].strip('-') or 'x'}"

    def define(self, name: str, body: str) -> str:
        self.size += len(name) + len(body) + 6
        if self.size > MAX_GRAMMAR_CHARS:
            raise _TooLarge
        self.rules[name] = body
        return name

    def _named(self, expr: str, hint: str) -> str:
        return expr if _NAME.fullmatch(expr) else self.define(self._new(hint), expr)

    def rule(self, node: Any, hint: str, depth: int = 0) -> str:
        """The name of a rule (or a primitive) for values of ``node``."""
        return self._named(self._expr(node, hint, depth), hint)

    def _expr(self, node: Any, hint: str, depth: int) -> str:
        if depth > MAX_SCHEMA_DEPTH or node is True or not isinstance(node, Mapping):
            return "value" if node is not False else "null"  # False allows nothing: never mind
        combiners = [k for k in _COMBINERS if k in node]
        if combiners and (len(combiners) > 1 or any(k in node for k in _SHAPING)):
            return _fallback(node)
        if "$ref" in node:
            return self._ref(node["$ref"], depth) if isinstance(node["$ref"], str) else "value"
        if "const" in node:
            return _json_literal(node["const"])
        if isinstance(node.get("enum"), list) and node["enum"]:
            return "( " + " | ".join(_json_literal(v) for v in node["enum"]) + " )"
        for key in ("anyOf", "oneOf"):
            options = node.get(key)
            if isinstance(options, list) and options:
                kind = node.get("type")
                if kind is not None:  # a type beside the options: the generic one
                    return _fallback(node)
                return "( " + " | ".join(self.rule(o, hint, depth + 1) for o in options) + " )"
        if "allOf" in node:
            parts = node["allOf"]
            if isinstance(parts, list) and len(parts) == 1 and "type" not in node:
                return self.rule(parts[0], hint, depth + 1)
            return _fallback(node)
        kind = node.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str) and k in _TYPE_RULE]
            if not kinds:
                return "value"
            return "( " + " | ".join(self._named(self._typed(node, k, hint, depth), hint)
                                     for k in kinds) + " )"
        if kind is None:
            kind = "object" if "properties" in node else "array" if "items" in node else None
        if not isinstance(kind, str) or kind not in _TYPE_RULE:
            return "value"
        return self._typed(node, kind, hint, depth)

    def _typed(self, node: Mapping[str, Any], kind: str, hint: str, depth: int) -> str:
        if kind == "object":
            return self._object(node, hint, depth)
        if kind == "array":
            return self._array(node, hint, depth)
        return _TYPE_RULE[kind]

    def _ref(self, ref: str, depth: int) -> str:
        if ref in self.refs:
            if self.pending.get(ref) is False:  # back into itself before reading anything:
                return "value"  # left recursion, which llama.cpp refuses (and means nothing)
            return self.refs[ref]
        target = resolve(self.schema, ref)
        if target is None:
            return "value"
        name = self._new(ref.rsplit("/", 1)[-1])
        self.refs[ref] = name  # before converting: a reference back into itself is recursion
        self.pending[ref] = False
        try:
            self.define(name, self._expr(target, name, depth + 1))
        finally:
            del self.pending[ref]
        return name

    def _reading(self) -> dict[str, bool]:
        """Mark every pending reference as past its first character (an object's ``{``, an
        array's ``[``); returns the marks to restore after the children."""
        saved = dict(self.pending)
        self.pending = dict.fromkeys(self.pending, True)
        return saved

    def _object(self, node: Mapping[str, Any], hint: str, depth: int) -> str:
        props = node.get("properties")
        required = [k for k in (node.get("required") or ()) if isinstance(k, str)]
        if not isinstance(props, Mapping) or not props:
            extra = node.get("additionalProperties")
            if isinstance(extra, Mapping) and extra and not required:
                saved = self._reading()
                try:
                    item = self.rule(extra, hint + "-value", depth + 1)
                finally:
                    self.pending = saved
                pair = self.define(self._new(hint + "-pair"), f'string ws ":" ws {item}')
                return f'"{{" ws ( {pair} ( ws "," ws {pair} )* )? ws "}}"'
            return "object"
        if any(k not in props for k in required):  # a property it must have but does not name
            return "object"
        order = required + [k for k in props if k not in required]
        saved = self._reading()
        try:
            pairs = {k: self.define(self._new(f"{hint}-{k}"), f'{_json_literal(k)} ws ":" ws '
                                    f'{self.rule(props[k], str(k), depth + 1)}') for k in order}
        finally:
            self.pending = saved
        optional = [k for k in order if k not in required]
        # the optional properties, each present or not, in their declared order: rest[i] is
        # what may follow once the properties before optional i were written
        rest = [self._new(f"{hint}-opt-{k}") for k in optional]
        for i, k in enumerate(optional):
            tail = f" {rest[i + 1]}" if i + 1 < len(optional) else ""
            self.define(rest[i], f'( ws "," ws {pairs[k]} )?{tail}')
        head = ' ws "," ws '.join(pairs[k] for k in required)
        if required:
            body = head + (f" {rest[0]}" if optional else "")
        else:  # no leading comma: the first property written starts the object
            starts = []
            for i, k in enumerate(optional):
                tail = f" {rest[i + 1]}" if i + 1 < len(optional) else ""
                starts.append(pairs[k] + tail)
            body = "( " + " | ".join(starts) + " )?"
        return f'"{{" ws {body} ws "}}"'

    def _array(self, node: Mapping[str, Any], hint: str, depth: int) -> str:
        prefix = node.get("prefixItems")
        saved = self._reading()
        try:
            if isinstance(prefix, list) and prefix and node.get("items") is False:
                items = ' ws "," ws '.join(self.rule(p, hint, depth + 1) for p in prefix)
                return f'"[" ws {items} ws "]"'
            items = node.get("items")
            if not isinstance(items, Mapping) or not items:
                return "array"
            item = self.rule(items, hint + "-item", depth + 1)
        finally:
            self.pending = saved
        return f'"[" ws ( {item} ( ws "," ws {item} )* )? ws "]"'


def _fallback(schema: Any) -> str:
    """Any value of the schema's one declared type (else any JSON value)."""
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    return _TYPE_RULE.get(kind, "value") if isinstance(kind, str) else "value"


def _rules(converter: _Converter, **named: str) -> str:
    """The converter's rules, ``named`` ones first, and the primitives: GBNF text."""
    lines = [f"{name} ::= {body}" for name, body in {**named, **converter.rules}.items()]
    return "\n".join(lines) + "\n" + PRIMITIVES + "\n"


def _schema_rules(schema: Any, name: str) -> str:
    """Rules whose rule ``name`` matches a JSON value in the schema's shape (``value`` of its
    type when the rules would pass :data:`MAX_GRAMMAR_CHARS`)."""
    converter = _Converter(schema if isinstance(schema, Mapping) else {})
    try:
        return _rules(converter, **{name: converter.rule(schema, "root")})
    except _TooLarge:
        return _rules(_Converter({}), **{name: _fallback(schema)})


def schema_grammar(schema: Any) -> str:
    """A GBNF grammar (root rule ``root``) whose every sentence is a JSON value in the schema's
    shape (see the module's note: some keywords are left to validation)."""
    return _schema_rules(schema, "root")


TOOL_CALL_TRIGGER = "<tool_call>"
JSON_FENCE = "```json"


def bare_call_triggers(tools: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The starts of a call written without tags (small models often write the call object
    alone), one per tool: ``{"name": "TOOL"`` (and without the space), each with the rule of
    what follows it. A JSON object whose name is not a tool's is no call and stays free."""
    out = []
    for k, tool in enumerate(tools):
        quoted = json.dumps(str(tool["name"]), ensure_ascii=False)
        out += [(f'{{"name": {quoted}', f"bare-{k}"), (f'{{"name":{quoted}', f"bare-{k}")]
    return out


def tool_calls_grammar(tools: Sequence[Mapping[str, Any]], *, parallel: bool = True) -> str:
    """Rules for calls in the Hermes / Qwen format. ``tagged`` is what follows ``<tool_call>``:
    a call object naming one of ``tools`` with arguments in its parameters' shape,
    ``</tool_call>`` and, with parallel calls, further ``<tool_call>`` blocks. ``bare-K`` is
    what follows ``{"name": "TOOL_K"`` in a call written without tags: the rest of that object
    and, with parallel calls, further such objects. Nothing may follow the last call."""
    converter = _Converter({})
    try:
        arguments = []
        for tool in tools:
            params = tool.get("parameters") or {"type": "object"}
            converter.schema = params if isinstance(params, Mapping) else {}
            converter.refs = {}  # each tool's references are its own
            arguments.append(converter.rule(params, str(tool["name"])))
    except _TooLarge:  # any call of a named tool, any object as arguments
        converter, arguments = _Converter({}), ["object"] * len(tools)
    tagged, bare = ' ( ws "<tool_call>" ws call ws "</tool_call>" )*', " ( ws call )*"
    named = {"tagged": 'ws call ws "</tool_call>"' + (tagged if parallel else ""),
             "call": '"{" ws "\\"name\\"" ws ":" ws ( '
                     + " | ".join(f"{_json_literal(t['name'])} tool-{k}"
                                  for k, t in enumerate(tools)) + " )"}
    for k, args in enumerate(arguments):
        named[f"tool-{k}"] = f'ws "," ws "\\"arguments\\"" ws ":" ws {args} ws "}}"'
        named[f"bare-{k}"] = f"tool-{k}" + (bare if parallel else "")
    return _rules(converter, **named)


def json_block_grammar(schema: Any) -> str:
    """Rules: ``fenced`` is what follows a ````` ```json ````` fence: a JSON value in the
    schema's shape (rule ``answer``), then the closing fence, and nothing after it."""
    return 'fenced ::= ws answer ws "```"\n' + _schema_rules(schema, "answer")


def tool_constraint(tools: Sequence[Mapping[str, Any]], *, required: bool,
                    parallel: bool = True) -> Constraint:
    """Calls decoded under their tools' schemas: after the first ``<tool_call>`` or untagged
    ``{"name": "TOOL"`` (anywhere in the reply: a text answer stays free), or, when a call is
    ``required``, from the first token."""
    return Constraint(tool_calls_grammar(tools, parallel=parallel),
                      triggers=((TOOL_CALL_TRIGGER, "tagged"), *bare_call_triggers(tools)),
                      lazy=not required, name="tool calls")


def json_answer_constraint(schema: Any) -> Constraint:
    """A JSON answer decoded under its schema: free reasoning, then after ````` ```json ````` a
    value in the schema's shape and the closing fence."""
    return Constraint(json_block_grammar(schema), triggers=((JSON_FENCE, "fenced"),), lazy=True,
                      name="json answer")
