"""JSON schemas from strangers, checked and applied with bounded work.

A client of ``ponder serve`` hands over JSON schemas (a tool's ``parameters``, a
``response_format``), and every candidate a model writes is validated against them. A schema is
a program: a few hundred bytes of ``$ref``s that each refer to the next level twice cost 2**levels
checks, a ``pattern`` like ``^(a+)+$`` backtracks for 2**n steps on n characters, and
``uniqueItems`` compares every pair of items. So, whatever the schema:

- **Size.** :func:`check_schema` refuses a schema of more than :data:`MAX_NODES` JSON nodes, and
  one that is larger than :data:`MAX_EXPANDED` nodes once every local ``$ref`` is replaced by what
  it points at (counted with memoization, so counting is linear; a reference back into itself
  counts once, since recursion is bounded by the value checked). ``$dynamicRef`` and
  ``$recursiveRef`` are refused: what they point at depends on the value.
- **Patterns.** ``pattern``, ``patternProperties`` (and ``additionalProperties`` next to them)
  run on RE2, whose matching is linear in the text; a pattern RE2 cannot compile (a
  backreference, a lookaround) is refused with the reason. ``unevaluatedProperties`` next to
  ``patternProperties`` is refused (jsonschema matches those with Python's ``re``).
- **Work.** Every keyword jsonschema applies is metered: a validation or a check that passes its
  budget of steps (:data:`VALIDATE_STEPS`, :data:`CHECK_STEPS`) or of seconds stops with
  :class:`SchemaTooCostly`. The steps make the cut deterministic; the seconds are a backstop for
  work the steps do not see. The checks of one request share a budget (:func:`check_budget`); a
  value's budget grows with its size, and a schema that ran out once is refused at once for
  the values after (:func:`validation_error`). ``uniqueItems`` hashes its items instead of
  comparing every pair.

The server checks a request's schemas in a thread, off its event loop (:mod:`ponder.server.app`,
:mod:`ponder.server.tools`); the chat
domain validates candidates with :func:`validation_error`.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache, lru_cache
from typing import Any

MAX_NODES = 10_000  # JSON nodes in one schema as written
MAX_EXPANDED = 20_000  # ... with every $ref replaced by its target
MAX_REF_DEPTH = 64  # references followed inside references
CHECK_STEPS = 400_000  # keyword applications to check a schema (its meta-schema and a dry run)
CHECK_SECONDS = 5.0
VALIDATE_STEPS = 50_000  # keyword applications to validate one value, at most...
VALIDATE_BASE_STEPS = 5_000  # ... and at most this plus ...
VALIDATE_STEPS_PER_NODE = 50  # ... this many per JSON node of the value
VALIDATE_SECONDS = 1.0
REQUEST_VALIDATE_STEPS = 500_000  # keyword applications for all the values of one request
REQUEST_VALIDATE_SECONDS = 5.0
REMEMBERED = 64  # schemas remembered as too costly
REGEX_MEMORY = 1 << 20  # bytes RE2 may use for one compiled pattern
_REF_COST = 4  # a $ref costs jsonschema several keywords' time (a registry lookup)
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})  # values, not schemas


class SchemaRefused(ValueError):
    """A schema this server will not use; the message says why, for the client."""


class SchemaTooCostly(SchemaRefused):
    """A check or a validation that ran out of its budget of steps or seconds."""


class RequestBudgetSpent(SchemaTooCostly):
    """A request's validations together ran out of their budget (no one schema is to blame)."""


# -- the meter -------------------------------------------------------------------------------


class _Meter:
    """Steps and a deadline for one check or validation; ``parent``, the request's meter
    (:func:`request_budget`), is charged the same steps and the time this one runs."""

    def __init__(self, steps: int, seconds: float, parent: _RequestMeter | None = None) -> None:
        self.left = steps
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.parent = parent

    def tick(self, cost: int) -> None:
        now = time.monotonic()
        if self.parent is not None:
            self.parent.tick(cost, now - self.started)
        self.left -= cost
        if self.left < 0 or now > self.deadline:
            raise SchemaTooCostly("the schema is too costly to check against this value (its "
                                  "references or keywords multiply the work)")

    def close(self) -> None:
        """The validation is over: its time goes to the request's meter."""
        if self.parent is not None:
            self.parent.used += time.monotonic() - self.started


class _RequestMeter:
    """What all the validations of one request may spend together: steps, and seconds spent
    validating (not the time the request has run: a model writes its candidates for minutes
    on a slow machine, and checking them must not be refused for that)."""

    def __init__(self, steps: int, seconds: float) -> None:
        self.left = steps
        self.seconds = seconds
        self.used = 0.0  # seconds of the validations that are over

    def spent(self, running: float = 0.0) -> bool:
        return self.left < 0 or self.used + running > self.seconds

    def tick(self, cost: int, running: float = 0.0) -> None:
        self.left -= cost
        if self.spent(running):
            raise RequestBudgetSpent(REQUEST_SPENT)


_METER: contextvars.ContextVar[_Meter | None] = contextvars.ContextVar("schema_meter",
                                                                       default=None)
_REQUEST_METER: contextvars.ContextVar[_RequestMeter | None] = contextvars.ContextVar(
    "schema_request_meter", default=None)
REQUEST_SPENT = ("this request's answers used up the work allowed for checking them against "
                 "its schemas")


@contextmanager
def request_budget(steps: int = REQUEST_VALIDATE_STEPS,
                   seconds: float = REQUEST_VALIDATE_SECONDS) -> Iterator[None]:
    """One budget for every validation inside (a server request's n candidates, each with its
    calls): past it, every further value is refused without work. Tasks started inside share
    it (they copy the context, and with it the same meter)."""
    token = _REQUEST_METER.set(_RequestMeter(steps, seconds))
    try:
        yield
    finally:
        _REQUEST_METER.reset(token)


@contextmanager
def check_budget(steps: int = CHECK_STEPS, seconds: float = CHECK_SECONDS) -> Iterator[None]:
    """One budget for every :func:`check_schema` inside (a request's tools and format share
    it, so many schemas cost no more than one large one)."""
    token = _METER.set(_Meter(steps, seconds))
    try:
        yield
    finally:
        _METER.reset(token)


def _cost(keyword: str, value: Any) -> int:
    if keyword in ("$ref", "$dynamicRef", "$recursiveRef"):
        return _REF_COST
    return 1 + (len(value) if isinstance(value, (list, dict)) and keyword in _DATA_KEYWORDS
                else 0)


def _metered(keyword: str, check: Callable[..., Any]) -> Callable[..., Any]:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        meter = _METER.get()
        if meter is not None:
            meter.tick(_cost(keyword, value))
        return check(validator, value, instance, schema)
    return run


# -- regular expressions on RE2 --------------------------------------------------------------


@lru_cache(maxsize=32)  # each up to REGEX_MEMORY: at most 32 MiB held
def compiled(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (linear-time matching); SchemaRefused when RE2 cannot."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise SchemaRefused(f"the pattern {_short(pattern)!r} cannot run on RE2 ({reason}"
                            f"{_hint(pattern)}); patterns here match in linear time, without "
                            "backreferences or lookaround") from None


def _hint(pattern: str) -> str:
    if any(f"\\{d}" in pattern for d in "123456789") or "\\k<" in pattern:
        return ": a backreference"
    if any(look in pattern for look in ("(?=", "(?!", "(?<=", "(?<!")):
        return ": a lookaround"
    return ""


def _search(pattern: str, text: str) -> bool:
    meter = _METER.get()
    if meter is not None:
        meter.tick(1 + len(text) // 4096)
    return compiled(pattern).search(text) is not None


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{_short(instance)!r} does not match {_short(pattern)!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any,
                        schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra: Any, instance: Any,
                           schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance
              if k not in properties and not any(_search(p, k) for p in patterns)]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        names = ", ".join(repr(_short(k, 40)) for k in extras[:5])
        yield ValidationError(f"additional properties are not allowed ({names} unexpected)")


# -- uniqueItems, by hashing -----------------------------------------------------------------


def _key(value: Any) -> Any:
    """A hashable key equal for values JSON-schema calls equal (1 == 1.0, true != 1)."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _key(v)) for k, v in value.items()))
    return ("other", repr(value))


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    meter = _METER.get()
    if meter is not None:
        meter.tick(len(instance))
    seen = set()
    for item in instance:
        key = _key(item)
        if key in seen:
            yield ValidationError("the array has non-unique elements")
            return
        seen.add(key)


_OWN = {"pattern": _pattern, "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties, "uniqueItems": _unique_items}


@cache
def bounded_validator(base: type) -> type:
    """jsonschema's validator class ``base`` with every keyword metered and the regex and
    uniqueness keywords replaced by the bounded ones above."""
    import jsonschema

    keywords = {name: _metered(name, _OWN.get(name, check))
                for name, check in base.VALIDATORS.items()}
    return jsonschema.validators.extend(base, validators=keywords)


def _validator_class(schema: Mapping[str, Any]) -> type:
    import jsonschema

    base = jsonschema.validators.validator_for(schema,
                                               default=jsonschema.Draft202012Validator)
    return bounded_validator(base)


# -- checking a schema -----------------------------------------------------------------------


def check_schema(schema: Any) -> None:
    """Refuse (SchemaRefused, saying why) a schema that is not an object, is too large written
    out or expanded, refers outside itself, has a pattern RE2 cannot run, or is invalid against
    its meta-schema; then run it once on an empty object so every reference and applicator is
    tried. Bounded in steps and seconds whatever the schema."""
    if not isinstance(schema, dict):
        raise SchemaRefused("must be a JSON object")
    nodes = _count_nodes(schema)
    if nodes > MAX_NODES:
        raise SchemaRefused(f"it has more than {MAX_NODES} nodes")
    _check_references(schema)
    _check_patterns(schema)
    expanded = expanded_size(schema, MAX_EXPANDED)
    if expanded > MAX_EXPANDED:
        raise SchemaRefused(f"it is larger than {MAX_EXPANDED} nodes once its $ref references "
                            "are expanded (references that refer to others several times "
                            "multiply)")
    with check_budget() if _METER.get() is None else nullcontext():
        try:
            _check_meta(schema)
            cls = _validator_class(schema)
            list(cls(schema).iter_errors({}))  # every reference and applicator runs once
        except SchemaTooCostly:
            raise SchemaRefused("it is too costly to check (its references or keywords "
                                "multiply the work)") from None
        except SchemaRefused:
            raise
        except RecursionError:
            raise SchemaRefused("its references nest too deep") from None
        except Exception as exc:  # noqa: BLE001 - an unresolvable $ref, a bad keyword value...
            raise SchemaRefused(_short(str(exc))) from None


def _check_meta(schema: dict[str, Any]) -> None:
    """Valid against its meta-schema (with ``format: regex`` meaning RE2), metered."""
    import jsonschema
    import re2

    cls = _validator_class(schema)
    checker = jsonschema.FormatChecker(formats=())
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)

    @checker.checks("regex", raises=(SchemaRefused, re2.error))
    def is_regex(value: object) -> bool:
        return not isinstance(value, str) or compiled(value) is not None

    meta = bounded_validator(jsonschema.validators.validator_for(cls.META_SCHEMA,
                                                                 default=cls))
    error = jsonschema.exceptions.best_match(
        meta(cls.META_SCHEMA, format_checker=checker).iter_errors(schema))
    if error is not None:
        raise SchemaRefused(_short(error.message))


def _children(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        yield from node.items()
    elif isinstance(node, list):
        yield from enumerate(node)


def _count_nodes(value: Any, most: int | None = None) -> int:
    """JSON nodes in ``value``, counted without recursion (up to a little past ``most``)."""
    count, stack = 0, [value]
    while stack and (most is None or count <= most):
        node = stack.pop()
        count += 1
        stack.extend(v for _, v in _children(node))
    return count


def _schema_nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every object in ``schema`` that can be a schema (not inside ``const``, ``enum``,
    ``default`` or ``examples``), without recursion."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(v for k, v in node.items() if k not in _DATA_KEYWORDS)
        elif isinstance(node, list):
            stack.extend(node)


def _check_references(schema: dict[str, Any]) -> None:
    pattern_properties = any("patternProperties" in node for node in _schema_nodes(schema))
    for node in _schema_nodes(schema):
        for keyword in ("$dynamicRef", "$recursiveRef"):
            if keyword in node:
                raise SchemaRefused(f"{keyword} is not supported here (only local '#/...' $ref)")
        # a nested base URI (or anchor) makes '#/...' mean another place than the root's, and
        # the expanded size is counted from the root: a schema could hide a ref bomb under one
        for keyword in ("$id", "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor"):
            if node is not schema and isinstance(node.get(keyword), str):
                raise SchemaRefused(f"{keyword} below the schema's root is not supported here "
                                    "(references resolve against the root)")
        ref = node.get("$ref")
        if isinstance(ref, str) and resolve(schema, ref) is None:
            raise SchemaRefused(f"the reference {_short(ref)!r} does not point into the schema "
                                "(only local '#/...' references)")
        if "unevaluatedProperties" in node and pattern_properties:
            raise SchemaRefused("unevaluatedProperties together with patternProperties is not "
                                "supported here")


def _check_patterns(schema: dict[str, Any]) -> None:
    for node in _schema_nodes(schema):
        if isinstance(node.get("pattern"), str):
            compiled(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                compiled(pattern)


_MISSING = object()


def resolve(schema: Any, ref: str) -> Any:
    """What a local reference (``#`` or ``#/a/b``) points at in ``schema``; None when it is not
    local or points at nothing."""
    if ref == "#":
        return schema
    if not ref.startswith("#/"):
        return None
    node: Any = schema
    for raw in ref[2:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def expanded_size(schema: Any, cap: int) -> int:
    """How many JSON nodes ``schema`` has with every local ``$ref`` replaced by its target: each
    target counted once and remembered (linear time), a reference back into a target being
    expanded counted as 1. Counting stops past ``cap`` (then some number above it)."""
    memo: dict[str, int] = {}
    active: set[str] = set()

    def size(node: Any, depth: int) -> int:
        total = 1
        for key, child in _children(node):
            if key == "$ref" and isinstance(child, str):
                total += target_size(child, depth)
            else:
                total += size(child, depth)
            if total > cap:
                return total
        return total

    def target_size(ref: str, depth: int) -> int:
        if ref in memo:
            return memo[ref]
        if ref in active:
            return 1
        if depth >= MAX_REF_DEPTH:
            raise SchemaRefused(f"its references nest more than {MAX_REF_DEPTH} deep")
        target = resolve(schema, ref)
        active.add(ref)
        try:
            memo[ref] = 1 if target is None else size(target, depth + 1)
        finally:
            active.discard(ref)
        return memo[ref]

    try:
        return size(schema, 0)
    except RecursionError:
        raise SchemaRefused("it nests too deep") from None


# -- validating a value ----------------------------------------------------------------------


def validation_error(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not validate against ``schema`` (None: it does), with bounded work: a
    schema too costly for this value is a reason too (:func:`first_validation_error`)."""
    return first_validation_error([(value, schema)])


def first_validation_error(checks: Sequence[tuple[Any, Mapping[str, Any]]]) -> str | None:
    """Why the first failing ``(value, schema)`` of ``checks`` does not validate (None: all do),
    all of them within one budget (a candidate's tool calls share one, not one each).

    The budget grows with the values (:data:`VALIDATE_STEPS_PER_NODE` per node over
    :data:`VALIDATE_BASE_STEPS`, at most :data:`VALIDATE_STEPS`): an honest schema costs a few
    steps per node of the value, one that multiplies its work per level of the value runs out
    soon. A schema that ran out once is remembered (the same object: one request's candidates
    share it), and every later value is refused without work: a strategy's n candidates cost
    one budget, not n. Inside :func:`request_budget`, every step is charged to the request too,
    and once that is spent every value is refused."""
    import jsonschema

    request = _REQUEST_METER.get()
    if request is not None and request.spent():
        return REQUEST_SPENT
    for _, schema in checks:
        known = _too_costly.get(schema)
        if known is not None:
            return known
    most = VALIDATE_STEPS // VALIDATE_STEPS_PER_NODE
    nodes = sum(_count_nodes(value, most=most) for value, _ in checks)
    steps = min(VALIDATE_STEPS, VALIDATE_BASE_STEPS + VALIDATE_STEPS_PER_NODE * nodes)
    meter = _Meter(steps, VALIDATE_SECONDS, parent=request)
    token = _METER.set(meter)
    schema: Any = None
    try:
        for value, schema in checks:
            validator = _validator_class(schema)(schema)
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                return error.message
    except RequestBudgetSpent as exc:
        return str(exc)
    except SchemaTooCostly as exc:
        _too_costly.put(schema, str(exc))
        return str(exc)
    except SchemaRefused as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a schema that cannot check this value
        return f"the schema cannot check it: {_short(str(exc))}"
    finally:
        meter.close()
        _METER.reset(token)
    return None


class _Remembered:
    """The last :data:`REMEMBERED` schemas found too costly, by identity (each kept alive here,
    so its id is not reused while it is remembered), with the reason; thread-safe."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._items: OrderedDict[int, tuple[Any, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, schema: Any) -> str | None:
        with self._lock:
            item = self._items.get(id(schema))
            return item[1] if item is not None and item[0] is schema else None

    def put(self, schema: Any, reason: str) -> None:
        with self._lock:
            self._items[id(schema)] = (schema, reason)
            self._items.move_to_end(id(schema))
            while len(self._items) > self.most:
                self._items.popitem(last=False)


_too_costly = _Remembered(REMEMBERED)


def _short(text: str, most: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= most else text[:most] + "…"
