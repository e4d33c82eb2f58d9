"""The two llama.cpp engines, native (llama-cpp-python, built from source) and prebuilt
(xllamacpp's wheel): the same backend behaviours on the bundled model, which one ponder picks,
and ``ponder ask`` / ``ponder models`` on the prebuilt one."""

import asyncio
import sys

import pytest

from ponder import (
    BackendError,
    ConfigError,
    GenerationRequest,
    Message,
    ModelError,
    SamplingParams,
    registry,
)
from ponder.backends import engines, loading
from ponder.backends.runs import determinism

pytestmark = pytest.mark.model

QUESTION = (Message("user", "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"),)
COUNT = (Message("user", "Count from 1 to 10, separated by commas."),)


@pytest.fixture
def backend(engine):
    return engine


def generate(backend, *requests):
    return asyncio.run(backend.generate(list(requests)))


def test_greedy_answer_and_max_tokens(backend):
    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.0, max_tokens=5))
    [[first]] = generate(backend, request)
    [[again]] = generate(backend, request)
    assert first.text and first.text == again.text
    assert first.finish_reason == "length" and first.usage.completion_tokens == 5
    assert first.usage.calls == 1 and first.usage.seconds > 0


def test_n_samples_with_their_own_seeds(backend):
    request = GenerationRequest(QUESTION, SamplingParams(temperature=1.0, max_tokens=6, seed=11),
                                n=3)
    [first] = generate(backend, request)
    [second] = generate(backend, request)
    prompt = asyncio.run(backend.count_prompt_tokens(request))
    assert [c.usage.prompt_tokens for c in first] == [prompt, 0, 0]  # the prompt charged once
    assert [c.usage.calls for c in first] == [1, 0, 0]
    assert [c.text for c in first] == [c.text for c in second]
    assert len({c.text for c in first}) > 1  # each sample its own random stream


def test_prompt_token_counts_agree_across_engines_and_with_the_engine(llama, prebuilt):
    requests = [GenerationRequest(QUESTION),
                GenerationRequest((Message("system", "Be brief."), *COUNT), prefill="1, 2,"),
                GenerationRequest((Message("user", "héllo <|im_start|> wörld 🙂"),))]
    for request in requests:
        counted = asyncio.run(prebuilt.count_prompt_tokens(request))
        assert counted == asyncio.run(llama.count_prompt_tokens(request))
        assert prebuilt.prompt_tokens(request) == llama.prompt_tokens(request)
        # the engine's own count of the same prompt, sent as text
        text = prebuilt.template.render(request.messages) + request.prefill
        answer = prebuilt._server.handle_completions({"prompt": text, "max_tokens": 1})
        assert answer["usage"]["prompt_tokens"] == counted


def test_logprobs_shape(backend):
    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.0, max_tokens=6,
                                                         logprobs=3))
    [[c]] = generate(backend, request)
    assert len(c.logprobs) == c.usage.completion_tokens == 6
    for t in c.logprobs:
        assert t.logprob <= 0.0 and len(t.top) == 3
        assert t.top[0][1] >= t.top[1][1] >= t.top[2][1]
        assert abs(t.logprob - t.top[0][1]) < 1e-6  # greedy picks the most likely token
    [[chosen]] = generate(backend, request.replace(params=request.params.replace(logprobs=0)))
    assert all(t.top == () for t in chosen.logprobs)
    assert "".join(t.token for t in chosen.logprobs) == chosen.text


def test_prefill_continues_and_stop_strings_cut(backend):
    request = GenerationRequest(COUNT, SamplingParams(temperature=0.0, max_tokens=12,
                                                      stop=("7",)), prefill="1, 2, 3,")
    [[c]] = generate(backend, request)
    assert c.text.strip().startswith("4")
    assert "7" not in c.text and c.finish_reason == "stop" and c.stop_sequence == "7"


def test_monitor_stops_one_sequence(backend):
    def monitor(index, text, token):
        return index == 1 and len(text) >= 5

    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.7, max_tokens=12, seed=5,
                                                         logprobs=0), n=2, monitor=monitor)
    [samples] = generate(backend, request)
    assert samples[1].finish_reason == "cancelled" and len(samples[1].text) >= 5
    assert samples[1].usage.completion_tokens < samples[0].usage.completion_tokens
    assert samples[0].finish_reason != "cancelled"


def test_a_failing_monitor_fails_its_call_and_the_engine_goes_on(backend):
    def monitor(index, text, token):
        raise RuntimeError("monitor crashed")

    request = GenerationRequest(QUESTION, SamplingParams(max_tokens=4), monitor=monitor)
    with pytest.raises(BackendError, match="monitor crashed"):
        generate(backend, request)
    [[c]] = generate(backend, GenerationRequest(QUESTION, SamplingParams(max_tokens=3)))
    assert c.usage.completion_tokens == 3


def test_same_size_and_capabilities(llama, prebuilt):
    assert prebuilt.parameters == llama.parameters
    assert prebuilt.capabilities.max_context == llama.capabilities.max_context
    caps = prebuilt.capabilities
    assert caps.logprobs and caps.prefill and caps.early_stop and not caps.parallel_n


def test_prebuilt_engine_says_it_is_not_batch_invariant(model_path):
    pytest.importorskip("xllamacpp")
    from ponder.backends.xllamacpp import XLlamaCppBackend

    backend = XLlamaCppBackend(model_path, n_ctx=512, n_seq_max=2, deterministic=True)
    try:
        report = determinism(backend)
        assert report["deterministic"] is False and "prebuilt" in report["why"]
        assert backend.identity()["engine"] == "prebuilt"
    finally:
        backend.close()


def test_prebuilt_refuses_missing_and_corrupt_files(tmp_path):
    pytest.importorskip("xllamacpp")
    from ponder.backends.xllamacpp import XLlamaCppBackend

    with pytest.raises(ModelError, match="not found"):
        XLlamaCppBackend(tmp_path / "nope.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="not a GGUF"):
        XLlamaCppBackend(tmp_path / "junk.gguf")
    (tmp_path / "truncated.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt"):
        XLlamaCppBackend(tmp_path / "truncated.gguf")


# -- which engine ---------------------------------------------------------------------------


def test_native_is_preferred_when_it_imports(monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.delenv(engines.ENGINE_ENV, raising=False)
    assert engines.choose_engine() == "native"
    assert engines.choose_engine("prebuilt") == "prebuilt"
    monkeypatch.setenv(engines.ENGINE_ENV, "prebuilt")
    assert engines.choose_engine() == "prebuilt"
    assert engines.choose_engine("native") == "native"  # the option wins over the variable


def test_prebuilt_is_used_without_the_native_engine(monkeypatch, model_path):
    pytest.importorskip("xllamacpp")
    monkeypatch.delenv(engines.ENGINE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert engines.choose_engine() == "prebuilt"
    backend = registry.backends.get("llamacpp")(model_path=model_path, n_ctx=512, n_seq_max=2)
    try:
        assert type(backend).__name__ == "XLlamaCppBackend"
    finally:
        backend.close()


def test_a_forced_engine_that_is_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError) as error:
        engines.choose_engine("native")
    message = str(error.value)
    assert "\n" not in message and "pip install 'ponder[native]'" in message
    assert "compiler" in message and "cmake" in message
    monkeypatch.setenv(engines.ENGINE_ENV, "native")
    with pytest.raises(ConfigError, match=r"ponder\[native\]"):
        registry.backends.get("llamacpp")(model_path="unused.gguf")
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(ConfigError, match="pip install xllamacpp"):
        engines.choose_engine("prebuilt")
    with pytest.raises(ConfigError, match="native, prebuilt or auto"):
        engines.choose_engine("turbo")


def test_engine_report_names_the_faster_command(monkeypatch, tmp_path):
    pytest.importorskip("xllamacpp")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu avx avx2 fma f16c avx512f avx512_vnni\n")
    flags = engines.cpu_flags(cpuinfo)
    report = engines.engine_report("prebuilt", flags)
    assert report.engine == "prebuilt" and "AVX2" in report.built
    assert "AVX512" not in report.built and "AVX512" in report.cpu
    assert report.faster is not None and "pip install 'ponder[native]'" in report.line()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert engines.hint_once(report) == report.line()
    assert engines.hint_once(report) is None  # the first slow run says it, once
    assert engines.engine_report("prebuilt", {"avx", "avx2", "fma", "f16c"}).faster is None


# -- the CLI on the prebuilt engine ---------------------------------------------------------


def test_ponder_ask_and_models_on_the_prebuilt_engine(capsys, monkeypatch, tmp_path):
    pytest.importorskip("xllamacpp")
    from ponder.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = set(map(id, loading.loaded_backends()))
    try:
        code = main(["ask", "What is 2 + 3?", "-B", "engine=prebuilt", "-B", "n_seq_max=2",
                     "-B", "n_ctx=1024", "-s", "cot", "--max-tokens", "8",
                     "--json"])
        assert code == 0
        out = capsys.readouterr().out
        assert '"answer"' in out and '"completion_tokens"' in out
        used = [b for b in loading.loaded_backends() if id(b) not in before]
        assert [getattr(b, "engine", None) for b in used] == ["prebuilt"]
    finally:
        for key, b in list(loading._LOADED.items()):
            if id(b) not in before:
                b.close()
                del loading._LOADED[key]
    monkeypatch.setenv(engines.ENGINE_ENV, "prebuilt")
    assert main(["models", "--dir", str(tmp_path)]) == 0
    assert "engine: prebuilt (xllamacpp" in capsys.readouterr().out


def test_a_prompt_longer_than_a_sequences_context_is_refused_as_too_long(backend):
    from ponder.errors import PromptTooLong

    long = (Message("user", "Repeat: " + "one two three four five six seven " * 120),)
    with pytest.raises(PromptTooLong, match=r"prompt of \d+ tokens does not fit the context"):
        generate(backend, GenerationRequest(long, SamplingParams(max_tokens=4)))


def test_the_server_answers_a_too_long_conversation_with_400_context_length_exceeded(llama):
    import httpx
    from test_server import Live

    with Live(llama) as live:
        reply = httpx.post(live.url + "/v1/chat/completions", timeout=60, json={
            "model": "ponder-self-consistency", "messages": [
                {"role": "user", "content": "Repeat: " + "one two three four five " * 200}]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert error["message"].startswith("the conversation is too long for this model: prompt of")
