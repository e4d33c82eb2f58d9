"""``ponder serve``: an OpenAI-compatible reasoning endpoint for any model."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from ponder.backends.loading import load_backend
from ponder.cli.ask import _option
from ponder.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible reasoning API",
                       description="Serve /v1/chat/completions with reasoning_effort, "
                       "ponder-<strategy> models, streaming and full usage.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("-m", "--model", default=None,
                   help="PATH.gguf, hf:OWNER/REPO/FILE.gguf, or the upstream model name "
                   "(default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--base-url", default=None,
                   help="an upstream OpenAI-compatible server (vLLM, SGLang, llama-server...)")
    p.add_argument("--upstream-api-key", default=None, help="the upstream server's key")
    p.add_argument("--api-key", default=None,
                   help="require this bearer token from clients (default: $PONDER_API_KEY; "
                   "none: no auth)")
    p.add_argument("-B", "--backend-option", type=_option, action="append", default=[],
                   metavar="KEY=VALUE", help="backend setting, e.g. -B n_seq_max=32")
    p.add_argument("--max-concurrent", type=int, default=8, help="requests running at once")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting beyond those (more get 429)")
    p.add_argument("--max-request-tokens", type=int, default=None,
                   help="token budget per request, over all its calls")
    p.add_argument("--max-request-seconds", type=float, default=600.0)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ponder.server.app import PonderServer

    for name in ("max_concurrent", "max_queue", "max_request_tokens", "max_request_seconds"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "max_queue" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    backend = load_backend(args.model, args.base_url, api_key=args.upstream_api_key,
                           **dict(args.backend_option))
    asyncio.run(backend.probe())  # a wrong URL or model fails now, in one line
    server = PonderServer(
        backend, api_key=args.api_key or os.environ.get("PONDER_API_KEY") or None,
        max_concurrent=args.max_concurrent, max_queue=args.max_queue,
        max_request_tokens=args.max_request_tokens,
        max_request_seconds=args.max_request_seconds)
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    print(f"ponder serving {server.model_id} at http://{host}:{port}/v1 "
          f"(auth {'on' if server.api_key else 'off'})", flush=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(server.app(), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
