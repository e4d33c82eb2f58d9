"""``ponder mcp``: ponder's search as MCP tools (``think``, ``solve_code``) for agents and editors.

Over stdio (the default: a desktop agent or an editor starts ``ponder mcp`` and talks to it on
its stdin and stdout) or streamable HTTP (``--transport http``, for remote agents: the endpoint is
``http://HOST:PORT/mcp``). As with ``ponder serve``, everything that names a model, a file or a
URL is the operator's: these flags and the ``--config`` file (per-strategy options, caps). A
client chooses a strategy among ``--allow-strategy``, an effort and capped knobs. Over HTTP a
non-loopback address needs ``--api-key`` (clients send ``Authorization: Bearer KEY``) unless
``--insecure``; a keyless server answers only loopback host names and local origins (the SDK's
DNS-rebinding guard, ``--allow-host`` / ``--allow-origin`` add more).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from ponder.backends.loading import load_role, scoped_options
from ponder.cli.endpoints import add_endpoint_flags, load_from_args, models_of
from ponder.cli.options import key_value
from ponder.cli.serve import check_exposure, is_loopback
from ponder.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="serve think and solve_code as MCP tools for agents",
                       description="Serve ponder's search as Model Context Protocol tools: "
                       "think (an answer with an account of its search) and solve_code (a "
                       "program that passed the given tests in the jail), with progress, "
                       "cancellation and the traces as resources. Models, files and URLs come "
                       "only from these flags and --config.")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                   help="stdio (default: the client starts this command) or streamable HTTP")
    p.add_argument("--host", default="127.0.0.1",
                   help="with --transport http: the address to listen on (default 127.0.0.1; "
                   "any other needs --api-key or --insecure)")
    p.add_argument("--port", type=int, default=8000, help="with --transport http; 0 picks a "
                   "free port")
    p.add_argument("--path", default="/mcp", help="with --transport http: the endpoint's path")
    p.add_argument("-m", "--model", action="append", default=None, metavar="[ROLE=]MODEL",
                   help="PATH.gguf, hf:OWNER/REPO/FILE.gguf, or the upstream model name "
                   "(default: the bundled SmolLM2-135M-Instruct); repeat it with a role for "
                   "the strategies that use a second model, e.g. -m strong=big.gguf or -m "
                   "strong=http://host:8000/v1#qwen-1.5b")
    add_endpoint_flags(p, "an upstream OpenAI-compatible server (vLLM, SGLang, "
                       "llama-server...)")
    p.add_argument("--upstream-api-key", default=None, help="the upstream server's key")
    p.add_argument("-B", "--backend-option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="backend setting, e.g. -B n_seq_max=16")
    p.add_argument("--api-key", default=None,
                   help="with --transport http: require this bearer token (default: "
                   "$PONDER_API_KEY)")
    p.add_argument("--insecure", action="store_true",
                   help="serve a non-loopback address without an API key")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="without an API key, also answer pages of this web origin")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST[:PORT]",
                   help="without an API key, also answer this Host name")
    p.add_argument("--config", default=None, metavar="FILE.json",
                   help="the operator's settings, as ponder serve's: per-strategy options and "
                   "limits (caps, and for HTTP the body and header limits)")
    p.add_argument("-s", "--strategy", default="self-consistency",
                   help="what think runs when the client names no strategy (default "
                   "self-consistency)")
    p.add_argument("--code-strategy", default="self-debug",
                   help="what solve_code runs when the client names no strategy (default "
                   "self-debug)")
    p.add_argument("--allow-strategy", action="append", default=[], metavar="NAME",
                   help="offer only these strategies (repeatable; default: every strategy "
                   "that needs one model)")
    p.add_argument("--cap", type=key_value, action="append", default=[], metavar="OPTION=N",
                   help="the largest value a call may give a strategy option, e.g. --cap n=16 "
                   "--cap max_tokens=2048")
    p.add_argument("--max-request-tokens", type=int, default=200_000,
                   help="token budget per call, prompt and completion over all its model "
                   "calls (default 200000); a call may ask for less")
    p.add_argument("--max-request-seconds", type=float, default=600.0,
                   help="time limit per call (default 600)")
    p.add_argument("--max-concurrent", type=int, default=2,
                   help="calls searching at once (default 2; the model batches their samples)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="calls waiting beyond those (default 16; more are refused)")
    p.add_argument("--max-question-chars", type=int, default=32_000,
                   help="the longest question or task (default 32000 characters)")
    p.add_argument("--max-tests", type=int, default=64, help="tests per call (default 64)")
    p.add_argument("--max-test-chars", type=int, default=4_000,
                   help="the longest test (default 4000 characters)")
    p.add_argument("--max-runs", type=int, default=64,
                   help="runs whose traces are kept as resources (default 64)")
    p.set_defaults(handler=run)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr meanwhile (native libraries print too): over stdio,
    stdout carries the protocol and nothing else."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def bearer_guard(app: Any, api_key: str) -> Any:
    """``app`` behind ``Authorization: Bearer API_KEY`` (401 otherwise, before the MCP app)."""
    from starlette.responses import JSONResponse

    expected = f"Bearer {api_key}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                reply = JSONResponse({"error": "a bearer token is required (Authorization: "
                                      "Bearer KEY)"}, status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
                await reply(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def run(args: argparse.Namespace) -> int:
    from ponder.mcp.checks import CallRules, McpLimits, usable_strategies
    from ponder.server.policy import check_operator_caps
    from ponder.server.settings import (
        ServeConfig,
        check_strategies,
        load_config,
        make_access,
        own_keys_only,
        prepare_scorers,
        with_limits,
    )

    http = args.transport == "http"
    api_key = (args.api_key or os.environ.get("PONDER_API_KEY") or None) if http else None
    if http:
        check_exposure(args.host, api_key, args.insecure)
    if os.environ.get("PONDER_SANDBOX", "").strip().lower() == "none":
        print("ponder: warning: ponder mcp ignores PONDER_SANDBOX=none: a client's tests and "
              "the model's code run only in the jail", file=sys.stderr, flush=True)
    config = load_config(args.config) if args.config else ServeConfig()
    args.model, named = models_of(args)
    roles = {**config.models, **named}
    if "generator" in roles:
        raise ConfigError("models: 'generator' is the model --model names without a role; "
                          "name the others by role, e.g. strong")
    limits = with_limits(config.limits, caps=dict(args.cap))
    strategies = own_keys_only(dict(config.strategies))
    check_strategies(strategies)
    check_operator_caps(strategies, limits.caps)
    rules = CallRules(
        limits=McpLimits(max_question_chars=args.max_question_chars, max_tests=args.max_tests,
                         max_test_chars=args.max_test_chars,
                         max_request_tokens=args.max_request_tokens,
                         max_request_seconds=args.max_request_seconds,
                         max_concurrent=args.max_concurrent, max_queue=args.max_queue,
                         max_runs=args.max_runs, caps=limits.caps),
        strategies=usable_strategies(args.allow_strategy, roles, strategies),
        roles=tuple(roles),
        default_strategy=args.strategy,
        code_strategy=args.code_strategy, operator=strategies)
    access = make_access((*config.access.origins, *args.allow_origin),
                         (*config.access.hosts, *args.allow_host))
    with stdout_to_stderr():  # over stdio, a native library's print would corrupt the protocol
        backend = load_from_args(args, args.upstream_api_key, dict(args.backend_option))
        models = {role: load_role(spec, api_key=args.upstream_api_key,
                                  **scoped_options(dict(args.backend_option), role))
                  for role, spec in roles.items()}
        for model in (backend, *models.values()):  # a wrong URL or model fails now, in one line
            asyncio.run(model.probe())
        prepare_scorers(strategies)  # the operator's reward models load now, not on a call

    from ponder.mcp.tools import PonderMCP

    tools = PonderMCP(backend, rules, models=models)
    server = tools.server()
    if not http:
        print(f"ponder mcp: serving {tools.model_id} over stdio", file=sys.stderr, flush=True)
        server.run("stdio")
        return 0
    return serve_http(args, server, tools.model_id, limits, access, api_key)


def serve_http(args: argparse.Namespace, server: Any, model_id: str, limits: Any, access: Any,
               api_key: str | None) -> int:
    """Serve the MCP app over streamable HTTP with ``ponder serve``'s connection limits."""
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from ponder.server.protocol import uvicorn_config

    security = None
    if api_key is None and is_loopback(args.host):
        # the SDK's DNS-rebinding guard: loopback names and local pages, plus what is allowed
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection="*" not in access.hosts,
            allowed_hosts=hosts + [h if ":" in h else f"{h}:*" for h in access.hosts],
            allowed_origins=origins + list(access.origins))
    app = server.streamable_http_app(streamable_http_path=args.path,
                                     max_request_body_size=limits.max_body_bytes,
                                     transport_security=security, host=args.host)
    if api_key:
        app = bearer_guard(app, api_key)
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    print(f"ponder mcp serving {model_id} at http://{host}:{port}{args.path} "
          f"(auth {'on' if api_key else 'off'})", flush=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn_config(app, limits, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
