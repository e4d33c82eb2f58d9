"""``ponder serve``: an OpenAI-compatible reasoning endpoint for any model.

Everything that names a model, a file or a URL is the operator's: these flags and the
``--config`` file (per-strategy options such as a reward model's URL, and the limits; see
:mod:`ponder.server.settings`). Clients choose a strategy, an effort and capped knobs. Serving a
non-loopback address without an API key is refused unless ``--insecure`` is given; without a
key, the server answers only its own web origin and, on loopback, its own host names
(``--allow-origin`` / ``--allow-host`` add more).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import sys

from ponder.backends.loading import load_role, scoped_options
from ponder.cli.endpoints import add_endpoint_flags, load_from_args, models_of
from ponder.cli.options import key_value
from ponder.errors import ConfigError
from ponder.presets import load_preset, register_preset

# flag -> the Limits field it sets (None: keep the config file's or the default)
LIMIT_FLAGS = {
    "--max-body-bytes": ("max_body_bytes", int, "request body in bytes (default 1 MiB; 413)"),
    "--max-header-bytes": ("max_header_bytes", int,
                           "request line and headers in bytes (default 16 KiB; 431)"),
    "--max-json-depth": ("max_json_depth", int, "nesting of the JSON body (default 64; 400)"),
    "--max-number-length": ("max_number_length", int,
                            "characters of a JSON number (default 40; 400)"),
    "--header-timeout": ("header_timeout", float,
                         "seconds a client has to send its request head (default 10; 408)"),
    "--body-timeout": ("body_timeout", float,
                       "seconds a client has to send its request body (default 30; 408)"),
    "--keep-alive-timeout": ("keep_alive_timeout", float,
                             "idle seconds a kept-alive connection stays open (default 5)"),
    "--max-connections": ("max_connections", int, "open connections (default 256; 503)"),
    "--max-connections-per-client": ("max_connections_per_client", int,
                                     "open connections from one client address (default 64; "
                                     "503)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible reasoning API",
                       description="Serve /v1/chat/completions with reasoning_effort, "
                       "ponder-<strategy> models, streaming and full usage. Clients choose a "
                       "strategy, an effort and capped numeric knobs; models, scorers, files "
                       "and URLs come only from these flags and --config.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --api-key "
                   "or --insecure)")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("-m", "--model", action="append", default=None, metavar="[ROLE=]MODEL",
                   help="PATH.gguf, hf:OWNER/REPO/FILE.gguf, or the upstream model name "
                   "(default: the bundled SmolLM2-135M-Instruct); repeat it with a role for "
                   "the strategies that use a second model, e.g. -m strong=big.gguf or "
                   "-m strong=http://host:8000/v1#qwen-1.5b")
    add_endpoint_flags(p, "an upstream OpenAI-compatible server (vLLM, SGLang, "
                       "llama-server...)")
    p.add_argument("--upstream-api-key", default=None, help="the upstream server's key")
    p.add_argument("--api-key", default=None,
                   help="require this bearer token from clients (default: $PONDER_API_KEY; "
                   "none: no auth, loopback addresses only unless --insecure)")
    p.add_argument("--insecure", action="store_true",
                   help="serve a non-loopback address without an API key (anyone who can "
                   "reach it can use it)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="without an API key, also answer pages of this web origin, e.g. "
                   "http://localhost:3000 (default: only the server's own; * for any)")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST[:PORT]",
                   help="without an API key, also answer this Host name on loopback "
                   "(default: localhost, 127.0.0.1, [::1]; * for any)")
    p.add_argument("--config", default=None, metavar="FILE.json",
                   help="the operator's settings: per-strategy options (scorers, reward "
                   "models, judges) and limits; flags override its limits")
    p.add_argument("--preset", action="append", default=[], metavar="NAME=FILE",
                   help="serve a preset file (ponder tune writes them) as the model ponder-NAME")
    p.add_argument("-B", "--backend-option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="backend setting, e.g. -B n_seq_max=32")
    p.add_argument("--no-grammar", dest="grammar", action="store_false",
                   help="sample tool calls and JSON answers freely (default: decoded under "
                   "their schemas' grammar where the engine can: llama.cpp, both engines)")
    p.add_argument("--max-concurrent", type=int, default=8, help="requests running at once")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting beyond those (more get 429)")
    p.add_argument("--max-request-tokens", type=int, default=None,
                   help="token budget per request, over all its calls")
    p.add_argument("--max-request-seconds", type=float, default=600.0)
    for flag, (_, kind, text) in LIMIT_FLAGS.items():
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--cap", type=key_value, action="append", default=[], metavar="OPTION=N",
                   help="the largest value a request may give a strategy option, e.g. "
                   "--cap n=32 --cap max_tokens=8192 (options: n, m, simulations, parallel, "
                   "max_n, probe_n, warmup, wave, rounds, max_steps, agents, layers, "
                   "n_per_proposer, strong_n, max_tokens)")
    p.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one ('' and 0.0.0.0 are not)."""
    if not host:
        return False
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    mapped = [getattr(a, "ipv4_mapped", None) or a for a in addresses]
    return bool(mapped) and all(a.is_loopback for a in mapped)


def check_exposure(host: str, api_key: str | None, insecure: bool) -> None:
    """Refuse a non-loopback address without an API key, unless ``insecure`` (then warn)."""
    if api_key or is_loopback(host):
        return
    where = host or "every interface"
    if not insecure:
        raise ConfigError(f"refusing to serve {where} without an API key: anyone who can reach "
                          "it could use the model at your expense; set --api-key (or "
                          "$PONDER_API_KEY), or pass --insecure to serve it open")
    print(f"ponder: warning: serving {where} without an API key (--insecure): anyone who can "
          "reach it can use it", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from ponder.server.app import PonderServer
    from ponder.server.policy import check_operator_caps
    from ponder.server.settings import (
        ServeConfig,
        check_strategies,
        load_config,
        make_access,
        with_limits,
    )

    for name in ("max_concurrent", "max_queue", "max_request_tokens", "max_request_seconds"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "max_queue" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    api_key = args.api_key or os.environ.get("PONDER_API_KEY") or None
    check_exposure(args.host, api_key, args.insecure)
    if os.environ.get("PONDER_SANDBOX", "").strip().lower() == "none":
        print("ponder: warning: ponder serve ignores PONDER_SANDBOX=none: a client's request "
              "runs model-written code only in the jail", file=sys.stderr, flush=True)
    for item in args.preset:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--preset expects NAME=FILE, got {item!r}")
        register_preset(name, load_preset(path))  # served as the model ponder-NAME
    config = load_config(args.config) if args.config else ServeConfig()
    changes = {field: getattr(args, flag[2:].replace("-", "_"))
               for flag, (field, _, _) in LIMIT_FLAGS.items()}
    limits = with_limits(config.limits, **changes, caps=dict(args.cap))
    check_strategies(config.strategies)
    check_operator_caps(config.strategies, limits.caps)
    access = make_access((*config.access.origins, *args.allow_origin),
                         (*config.access.hosts, *args.allow_host))
    args.model, named = models_of(args)
    roles = {**config.models, **named}
    if "generator" in roles:
        raise ConfigError("models: 'generator' is the model --model names without a role; "
                          "name the others by role, e.g. strong")
    backend = load_from_args(args, args.upstream_api_key, dict(args.backend_option))
    models = {role: load_role(spec, api_key=args.upstream_api_key,
                              **scoped_options(dict(args.backend_option), role))
              for role, spec in roles.items()}

    async def probe() -> None:  # a wrong URL or model fails now, in one line
        for model in (backend, *models.values()):
            await model.probe()

    asyncio.run(probe())
    server = PonderServer(
        backend, api_key=api_key, max_concurrent=args.max_concurrent, max_queue=args.max_queue,
        max_request_tokens=args.max_request_tokens,
        max_request_seconds=args.max_request_seconds, limits=limits,
        strategies=config.strategies,
        allow_origins=access.origins, allow_hosts=access.hosts, models=models,
        grammar=args.grammar)
    server.prepare()  # the operator's reward models and judges load now, not on a request
    uvicorn_config = server.uvicorn_config(log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=5)
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    beside = "".join(f", {role} model {model.model}" for role, model in models.items())
    print(f"ponder serving {server.model_id}{beside} at http://{host}:{port}/v1 "
          f"(auth {'on' if server.api_key else 'off'})", flush=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    uvicorn.Server(uvicorn_config).run(sockets=[sock])
    return 0
