"""``ponder models``: the models ponder can resolve."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from rich.table import Table

from ponder.backends.endpoints import redact_url
from ponder.backends.models import BUNDLED_NAME, bundled_model_path, local_models
from ponder.cli.render import stdout_console
from ponder.errors import ConfigError, ModelError

MODELS_DIR_ENV = "PONDER_MODELS_DIR"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models ponder can use")
    p.add_argument("--dir", action="append", default=[], type=Path,
                   help=f"folder of .gguf files (also ${MODELS_DIR_ENV}; default: .)")
    p.add_argument("--base-url", action="append", default=[],
                   help="an OpenAI-compatible server to list (also $OPENAI_BASE_URL)")
    p.add_argument("--api-key", default=None)
    p.set_defaults(handler=run)


async def _served(base_url: str, api_key: str | None) -> list[str]:
    from ponder.backends.openai_http import OpenAIBackend

    backend = OpenAIBackend("", base_url, api_key=api_key, max_retries=0, timeout=10)
    try:
        import openai

        try:
            page = await backend.client.models.list()
        except openai.OpenAIError as exc:
            return [f"(unreachable: {backend._translate(exc)})"]
        return [m.id for m in page.data]
    finally:
        await backend.aclose()


def run(args: argparse.Namespace) -> int:
    table = Table(title="models", title_justify="left")
    table.add_column("model (--model)")
    table.add_column("backend")
    table.add_column("where")
    try:
        table.add_row(f"{BUNDLED_NAME} (default)", "llamacpp", str(bundled_model_path()))
    except ModelError as exc:
        table.add_row(BUNDLED_NAME, "llamacpp", f"(missing: {exc})")
    folders = list(args.dir)
    if os.environ.get(MODELS_DIR_ENV):
        folders.append(Path(os.environ[MODELS_DIR_ENV]))
    for path in local_models(folders or [Path(".")]):
        size = path.stat().st_size / 2**20
        table.add_row(str(path), "llamacpp", f"local file, {size:,.0f} MiB")
    urls = list(args.base_url)
    if os.environ.get("OPENAI_BASE_URL"):
        urls.append(os.environ["OPENAI_BASE_URL"])
    for url in urls:
        for name in asyncio.run(_served(url, args.api_key)):
            table.add_row(name, "openai", f"--base-url {redact_url(url)}")
    console = stdout_console()
    console.print(table)
    console.print(engine_line(), markup=False, highlight=False, soft_wrap=True)
    return 0


def engine_line() -> str:
    """Which llama.cpp engine runs in-process models, what it was built for against this CPU,
    and the command that would make it faster."""
    from ponder.backends.engines import engine_report

    try:
        return engine_report().line()
    except ConfigError as exc:
        return f"engine: none ({exc})"
