"""PRM plumbing on tiny randomly initialised models built here (no download), and prm-http
against a local server that answers like vLLM's pooling API."""

import asyncio
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.core.context import Context
from ponder.errors import BackendUnavailable, ConfigError, ModelError
from ponder.types import Problem, Step
from ponder.verifiers.prm_http import PrmHttpScorer, format_for_prm
from ponder.verifiers.steps import load_step_scorer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CORPUS = ["Tom has 3 apples and buys 5 more. How many apples does he have?",
          "Step 1: 3 + 5 = 8 apples.", "The answer is 8.", "Step 2: so he has 8 apples + -"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A byte-level BPE tokenizer with the PRMs' separators as added tokens, and three tiny
    Qwen2 models: a 2-label token head, a causal LM and a 1-label value head."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<extra_0>", "ки"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
    paths = {}
    for name, cls, labels in (("qwen", "Qwen2ForTokenClassification", 2),
                              ("math-shepherd", "Qwen2ForCausalLM", 2),
                              ("value-head", "Qwen2ForTokenClassification", 1)):
        torch.manual_seed(0)
        config = transformers.Qwen2Config(
            vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            num_labels=labels, pad_token_id=0)
        path = tmp_path_factory.mktemp(name)
        getattr(transformers, cls)(config).save_pretrained(path)
        fast.save_pretrained(path)
        paths[name] = str(path)
    return paths


STEPS = [Step("3 + 5 = 8 apples."), Step("So he has 8 apples."), Step("The answer is 8.")]


def score(scorer, partials):
    return asyncio.run(scorer.score_steps(Problem(CORPUS[0]), partials, Context(
        ScriptedBackend())))


@pytest.mark.parametrize("convention", ["qwen", "math-shepherd", "value-head"])
def test_prm_scores_every_step_at_its_separator(tiny_models, convention):
    scorer = load_step_scorer("prm", {"model": tiny_models[convention],
                                      "convention": convention})
    ids, positions = scorer.encode(Problem(CORPUS[0]), STEPS)
    assert len(positions) == 3 and all(ids[p] == scorer.separator_id for p in positions)
    full, prefix = score(scorer, [STEPS, STEPS[:2]])
    assert len(full) == 3 and all(0.0 <= s <= 1.0 for s in full)
    # causal: a step's score depends only on the steps up to it, batched or not, padded or not
    assert prefix == pytest.approx(full[:2], abs=1e-5)
    # the score is read the way the convention says, at the separator positions
    with torch.no_grad():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0].float()
    if convention == "qwen":
        expected = [logits[p].softmax(-1)[1].item() for p in positions]
    elif convention == "math-shepherd":
        good, bad = scorer.label_ids
        expected = [logits[p][[good, bad]].softmax(-1)[0].item() for p in positions]
    else:
        expected = [logits[p][0].sigmoid().item() for p in positions]
    assert full == pytest.approx(expected, abs=1e-5)


def test_prm_guides_a_beam_search(tiny_models):
    fake = ScriptedBackend(lambda request, i: ["3 + 5 = 8.\n\n", "3 + 5 = 9.\n\n",
                                               "The answer is 8.", "The answer is 9."][
        min(3, 2 * request.prefill.count("\n\n") + i)])
    result = asyncio.run(asolve(CORPUS[0], "beam-search", backend=fake, n=1, m=2, scorer="prm",
                                scorer_options={"model": tiny_models["qwen"]}))
    nodes = result.trace.nodes
    assert [n.label for n in nodes if n.kind == "score"] == ["prm x2", "prm x2"]
    # depth 1: the two first steps, scored by the PRM; the one it scores higher is kept
    direct = score(load_step_scorer("prm", {"model": tiny_models["qwen"]}),
                   [[Step("3 + 5 = 8.")], [Step("3 + 5 = 9.")]])
    depth1 = next(n for n in nodes if n.label == "beams depth 1")
    [[kept]], [[pruned]] = depth1.data["kept"], depth1.data["pruned"]
    traced = {nodes[i].data["text"]: nodes[i].data["score"] for i in (kept, pruned)}
    assert traced == pytest.approx({"3 + 5 = 8.": direct[0][0], "3 + 5 = 9.": direct[1][0]},
                                   abs=1e-4)
    assert nodes[kept].data["score"] >= nodes[pruned].data["score"]
    assert nodes[pruned].data["status"] == "pruned"
    # the answer continues the kept step, and its path score is the PRM's weakest step
    [candidate] = result.candidates
    assert candidate.text.startswith(nodes[kept].data["text"])
    assert candidate.score == pytest.approx(min(candidate.metadata["step_scores"]), abs=1e-4)


def test_prm_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="needs a model"):
        load_step_scorer("prm", {})
    with pytest.raises(ConfigError, match="unknown PRM convention"):
        load_step_scorer("prm", {"model": "x", "convention": "nope"})
    with pytest.raises(ModelError, match="cannot load the reward model"):
        load_step_scorer("prm", {"model": str(tmp_path / "missing")})


class PoolingHandler(BaseHTTPRequestHandler):
    """Answers like ``vllm serve <PRM> --runner pooling``: per input, one [p_bad, p_good] row
    per step separator, ``<extra_0>`` or else a newline (here p_good = 0.1 x its number)."""

    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        PoolingHandler.requests.append((self.path, body, self.headers.get("Authorization")))
        tags = [text.count("<extra_0>") or text.count("\n") for text in body["input"]]
        data = [{"index": i, "object": "pooling",
                 "data": [[1 - 0.1 * k, 0.1 * k] for k in range(1, n + 1)]}
                for i, n in enumerate(tags)]
        payload = json.dumps({"object": "list", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def pooling_server():
    server = HTTPServer(("127.0.0.1", 0), PoolingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    PoolingHandler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_prm_http_reads_step_rows_from_the_pooling_api(pooling_server):
    scorer = PrmHttpScorer(url=pooling_server, model="prm", api_key="k")
    out = score(scorer, [STEPS, STEPS[:1]])
    assert out == [pytest.approx([0.1, 0.2, 0.3]), pytest.approx([0.1])]
    path, body, auth = PoolingHandler.requests[0]
    assert path == "/pooling" and body["model"] == "prm" and auth == "Bearer k"
    assert body["input"][1] == format_for_prm("qwen", "<extra_0>", Problem(CORPUS[0]), STEPS[:1])
    assert body["input"][1].count("<extra_0>") == 1
    # known scores are reused: nothing new to score, no request
    known = asyncio.run(scorer.score_steps(Problem("q"), [STEPS[:1]], Context(ScriptedBackend()),
                                           known=[[0.7]]))
    assert known == [[0.7]] and len(PoolingHandler.requests) == 1
    scorer.activation = "sigmoid"
    assert scorer._step_score([0.0]) == 0.5 and scorer._step_score(2.0) == pytest.approx(
        1 / (1 + math.exp(-2.0)))


def test_prm_http_reads_the_rows_of_the_steps_not_of_the_question(pooling_server):
    # value-head: "question\nstep 1\nstep 2\n" has three newlines, the steps own the last two
    scorer = PrmHttpScorer(url=pooling_server, convention="value-head")
    assert score(scorer, [STEPS[:2]]) == [pytest.approx([0.2, 0.3])]


def test_prm_http_unreachable_is_a_clear_error():
    scorer = PrmHttpScorer(url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(BackendUnavailable, match="cannot reach the reward server"):
        score(scorer, [STEPS])


def test_prm_http_errors_name_the_server_without_its_secrets():
    scorer = PrmHttpScorer(url="http://user:secret@127.0.0.1:9/pooling?token=tok123", timeout=2)
    with pytest.raises(BackendUnavailable) as caught:
        score(scorer, [STEPS])
    message = str(caught.value)
    assert "127.0.0.1:9/pooling" in message
    assert "secret" not in message and "tok123" not in message


def mock_scorer(replies, **options):
    """A prm-http scorer over httpx.MockTransport: ``replies`` answers each request in turn (a
    status and JSON, or an exception to raise); the requests are kept."""
    import httpx

    seen: list = []
    queue = list(replies)

    def handle(request):
        seen.append(request)
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        status, payload = reply
        return httpx.Response(status, json=payload)

    options.setdefault("url", "http://prm.test:8000/v1?token=tok123")
    scorer = PrmHttpScorer(transport=httpx.MockTransport(handle), **options)
    return scorer, seen


ROWS = {"data": [{"index": 0, "data": [[0.9, 0.1], [0.4, 0.6]]}], "usage": {"prompt_tokens": 42}}


def test_prm_http_retries_what_a_retry_can_help_and_keeps_the_query():
    import httpx

    scorer, seen = mock_scorer([(503, {"error": "warming up"}),
                                httpx.ConnectError("refused"), (200, ROWS)],
                               model="prm", api_key="k", max_retries=2)
    assert score(scorer, [STEPS[:2]]) == [pytest.approx([0.1, 0.6])]
    assert len(seen) == 3  # two failures retried, then the answer
    assert seen[-1].url.path == "/pooling" and seen[-1].url.params["token"] == "tok123"
    assert seen[-1].headers["authorization"] == "Bearer k"
    assert json.loads(seen[-1].content)["model"] == "prm"


def test_prm_http_maps_failures_as_the_openai_backend_does():
    import httpx

    from ponder.errors import BackendError, BackendTimeout, RequestRejected

    scorer, seen = mock_scorer([(400, {"error": "input too long"})], max_retries=3)
    with pytest.raises(RequestRejected, match="answered 400: .*input too long"):
        score(scorer, [STEPS])
    assert len(seen) == 1  # a bad request is not retried
    scorer, seen = mock_scorer([(401, {})], max_retries=3)
    with pytest.raises(BackendError, match="rejected the API key"):
        score(scorer, [STEPS])
    scorer, seen = mock_scorer([httpx.ReadTimeout("slow")] * 2, max_retries=1)
    with pytest.raises(BackendTimeout, match="reward server http://prm.test:8000/pooling\\?… "
                       "timed out"):
        score(scorer, [STEPS])
    assert len(seen) == 2
    scorer, seen = mock_scorer([(500, {"error": "see http://u:pw@inner/x"})] * 2, max_retries=1)
    with pytest.raises(BackendUnavailable) as caught:
        score(scorer, [STEPS])
    assert "pw" not in str(caught.value) and "tok123" not in str(caught.value)
    scorer, _ = mock_scorer([(200, {"data": []})])
    with pytest.raises(BackendError, match="expected 1 results"):
        score(scorer, [STEPS])
