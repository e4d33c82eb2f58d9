import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ponder.backends.fake import ScriptedBackend
from ponder.backends.models import bundled_model_path


@pytest.fixture
def fake():
    return ScriptedBackend()


@pytest.fixture(scope="session")
def model_path():
    return bundled_model_path()


@pytest.fixture(scope="session")
def kquant(model_path, tmp_path_factory):
    """The bundled model requantized to Q4_K_M: a second, different model file (K-quant
    kernels change with the batch; a second mind for many-model runs)."""
    import ctypes

    import llama_cpp

    out = tmp_path_factory.mktemp("kquant") / "smollm2-q4_k_m.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(model_path).encode(), str(out).encode(),
                                        ctypes.byref(params))
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def llama(model_path):
    from ponder.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(model_path, n_ctx=4096, n_seq_max=8)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def prebuilt(model_path):
    """The bundled model on the prebuilt engine (xllamacpp), as ``llama`` is on the native."""
    pytest.importorskip("xllamacpp")
    from ponder.backends.xllamacpp import XLlamaCppBackend

    backend = XLlamaCppBackend(model_path, n_ctx=4096, n_seq_max=8)
    yield backend
    backend.close()


@pytest.fixture(params=["native", "prebuilt"])
def engine(request):
    """Each llama.cpp engine in turn, on the bundled model."""
    if request.param == "native":
        pytest.importorskip("llama_cpp")
        return request.getfixturevalue("llama")
    return request.getfixturevalue("prebuilt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(model_path, alias, log):
    """llama-cpp-python's OpenAI-compatible server on localhost; returns (process, /v1 URL)."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
             "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--verbose", "false"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/v1/models", timeout=2)
            return proc, f"{url}/v1"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("llama_cpp.server did not start:\n"
                                   + log.read_text()[-2000:]) from None
            time.sleep(0.5)


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def llama_server(model_path, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on localhost, serving the bundled model."""
    if shutil.which(sys.executable) is None:  # pragma: no cover
        pytest.skip("no python")
    proc, url = start_llama_server(model_path, "smol",
                                   tmp_path_factory.mktemp("server") / "server.log")
    yield url
    stop_server(proc)
