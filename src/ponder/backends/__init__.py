"""Backends: the one async, batched protocol that every model sits behind."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "BUNDLED_NAME": "ponder.backends.models",
    "Backend": "ponder.backends.base",
    "Capabilities": "ponder.backends.base",
    "EndpointSpec": "ponder.backends.endpoints",
    "LlamaCppBackend": "ponder.backends.llamacpp",
    "ModelSpec": "ponder.backends.models",
    "OpenAIBackend": "ponder.backends.openai_http",
    "PerLoop": "ponder.backends.loops",
    "ProgressCallback": "ponder.backends.base",
    "ROLE_PREFIX": "ponder.backends.endpoints",
    "ScriptedBackend": "ponder.backends.fake",
    "XLlamaCppBackend": "ponder.backends.xllamacpp",
    "batch_options": "ponder.backends.runs",
    "bundled_model_path": "ponder.backends.models",
    "choose_engine": "ponder.backends.engines",
    "determinism": "ponder.backends.runs",
    "determinism_of": "ponder.backends.runs",
    "endpoint_roles": "ponder.backends.endpoints",
    "endpoint_specs": "ponder.backends.endpoints",
    "endpoint_stats": "ponder.backends.runs",
    "engine_report": "ponder.backends.engines",
    "file_sha256": "ponder.backends.models",
    "forward_chat": "ponder.backends.openai_http",
    "forward_chat_stream": "ponder.backends.openai_http",
    "generate_each": "ponder.backends.base",
    "hint_once": "ponder.backends.engines",
    "load_backend": "ponder.backends.loading",
    "load_role": "ponder.backends.loading",
    "loaded_backends": "ponder.backends.loading",
    "local_models": "ponder.backends.models",
    "opened_backend": "ponder.backends.loading",
    "opened_models": "ponder.backends.loading",
    "redact_url": "ponder.backends.endpoints",
    "redact_urls": "ponder.backends.endpoints",
    "release": "ponder.backends.loading",
    "resolve_model": "ponder.backends.models",
    "role_identity": "ponder.backends.loading",
    "scoped_options": "ponder.backends.loading",
    "shown_model": "ponder.backends.runs",
    "shown_urls": "ponder.backends.endpoints",
    "split_role": "ponder.backends.loading",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUNDLED_NAME",
    "Backend",
    "Capabilities",
    "EndpointSpec",
    "LlamaCppBackend",
    "ModelSpec",
    "OpenAIBackend",
    "PerLoop",
    "ProgressCallback",
    "ROLE_PREFIX",
    "ScriptedBackend",
    "XLlamaCppBackend",
    "batch_options",
    "bundled_model_path",
    "choose_engine",
    "determinism",
    "determinism_of",
    "endpoint_roles",
    "endpoint_specs",
    "endpoint_stats",
    "engine_report",
    "file_sha256",
    "forward_chat",
    "forward_chat_stream",
    "generate_each",
    "hint_once",
    "load_backend",
    "load_role",
    "loaded_backends",
    "local_models",
    "opened_backend",
    "opened_models",
    "redact_url",
    "redact_urls",
    "release",
    "resolve_model",
    "role_identity",
    "scoped_options",
    "shown_model",
    "shown_urls",
    "split_role",
]
