"""The files a page is built from: a result (``ponder ask --json``), a trace written with
``--trace-out`` (one node per line), or a server's reply with ``ponder.trace``. Anything else is
a :class:`~ponder.errors.ConfigError` that says what the file is not."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError
from ponder.view.model import build_view, view_of_result


def read_views(path: str | Path) -> list[dict[str, Any]]:
    """The views in a result, trace or server-reply file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder: an evaluation's folder needs --problem ID"
                          ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return views_of(_parse(text), path.name)
    except RecursionError:  # parsed, but too deep for what draws the page
        raise ConfigError(f"{path} is not a ponder result or trace: it is nested too deeply"
                          ) from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a ponder result or trace: {exc}") from None


def _parse(text: str) -> Any:
    """One JSON document, or JSON lines (a trace). Nesting deeper than the parser's recursion
    limit is a ValueError, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("its JSON is nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise ValueError(f"not JSON ({exc.msg}, line {exc.lineno})") from None
        try:
            return [json.loads(line) for line in lines]
        except RecursionError:
            raise ValueError("its JSON is nested too deeply to read") from None
        except json.JSONDecodeError as bad:
            raise ValueError(f"not JSON, nor JSON lines ({bad.msg})") from None


def views_of(data: Any, name: str = "") -> list[dict[str, Any]]:
    """Views of parsed JSON: a result, a list of trace nodes, a trace ``{"nodes": [...]}``, or a
    server's ``chat.completion`` (one view per choice with a trace). ValueError otherwise."""
    if isinstance(data, list):
        return [build_view(nodes=data)]
    if not isinstance(data, Mapping):
        raise ValueError("expected a JSON object or trace lines")
    if data.get("object") == "chat.completion" and isinstance(data.get("ponder"), list):
        views = []
        for i, details in enumerate(data["ponder"]):
            if not isinstance(details, Mapping) or not isinstance(details.get("trace"), Mapping):
                continue
            answer = None
            choices = data.get("choices") or []
            if i < len(choices) and isinstance(choices[i], Mapping):
                answer = (choices[i].get("message") or {}).get("content")
            views.append(build_view(
                nodes=details["trace"].get("nodes"), strategy=details.get("strategy"),
                label=f"choice {i + 1}" if len(data["ponder"]) > 1 else None, answer=answer,
                config=details.get("config"), model=str(data.get("model") or ""),
                stop_reason=details.get("stop_reason")))
        if not views:
            raise ValueError("the reply holds no trace: ask with \"ponder\": {\"trace\": true}")
        return views
    if "strategy" in data and "candidates" in data and "answer" in data:
        if not isinstance(data["candidates"], list):
            raise ValueError("its candidates are not a list")
        return [view_of_result(data)]
    if isinstance(data.get("nodes"), list):
        return [build_view(nodes=data["nodes"])]
    raise ValueError("expected `ponder ask --json` output, a --trace-out file or a server reply")
