"""ponder serve's live pages: a traced request's page at /ui/<128-bit id>, following the search
as it runs; the API key asked for as the API asks (Bearer, or Basic for a browser); a bounded
store; nothing for a request that asked for no trace."""

import asyncio
import base64
import json
import re
import threading
import time

import httpx
import pytest
from starlette.testclient import TestClient
from test_server import Live, arithmetic

from ponder import ScriptedBackend
from ponder.server.app import PonderServer

ASK = {"model": "ponder-self-consistency",
       "messages": [{"role": "user", "content": "What is 2 + 3?"}],
       "ponder": {"n": 3, "trace": True}}


def page_data(html: str) -> dict:
    return json.loads(re.search(r'id="ponder-data">(.*?)</script>', html, re.DOTALL).group(1))


class GatedBackend(ScriptedBackend):
    """Answers the first call at once and waits for ``gate`` before any later one."""

    def __init__(self, responder):
        super().__init__(responder)
        self.gate = threading.Event()

    async def generate(self, requests, on_progress=None):
        if self.calls >= 1:
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        return await super().generate(requests, on_progress)


class TrickleBackend(ScriptedBackend):
    """Finishes a call's samples one at a time (each reported as it finishes) and waits for
    ``gate`` before the last one of each call."""

    def __init__(self, responder):
        super().__init__(responder)
        self.gate = threading.Event()

    async def generate(self, requests, on_progress=None):
        out = []
        for request in requests:
            samples = []
            for i in range(request.n):
                if i == request.n - 1:
                    while not self.gate.is_set():
                        await asyncio.sleep(0.01)

                def report(_, completion, i=i, request=request):
                    if request.on_sample is not None:
                        request.on_sample(i, completion)

                [[sample]] = await super().generate([request.replace(n=1, on_sample=report)],
                                                    on_progress)
                samples.append(sample)
            out.append(samples)
        return out


def test_a_traced_request_gets_a_page_with_its_trace():
    server = PonderServer(ScriptedBackend(arithmetic))
    with TestClient(server.app()) as http:
        reply = http.post("/v1/chat/completions", json=ASK).json()
        url = reply["ponder"][0]["view_url"]
        view_id = url.rsplit("/", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{32}", view_id)  # 128 random bits
        page = http.get(f"/ui/{view_id}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'none'" in policy  # finished
        assert page.headers["x-frame-options"] == "DENY"
        [view] = page_data(page.text)["views"]
        assert view["question"] == "What is 2 + 3?" and view["answer"] == "5"
        assert view["status"] == "done" and len(view["nodes"]) == len(
            reply["ponder"][0]["trace"]["nodes"])
        assert view["groups"][0]["winner"] and view["groups"][0]["count"] == 3
        data = http.get(f"/ui/{view_id}/data").json()
        assert data["views"][0]["answer"] == "5"
        # a second request gets its own id; one without a trace gets no page
        other = http.post("/v1/chat/completions", json=ASK).json()["ponder"][0]["view_url"]
        assert other != url
        plain = http.post("/v1/chat/completions", json={**ASK, "ponder": {"n": 2}}).json()
        assert "view_url" not in plain["ponder"][0] and len(server.views) == 2


def test_pages_ask_for_the_api_key_and_hide_unknown_ids():
    server = PonderServer(ScriptedBackend(arithmetic), api_key="sesame")
    bearer = {"Authorization": "Bearer sesame"}
    with TestClient(server.app()) as http:
        url = http.post("/v1/chat/completions", json=ASK,
                        headers=bearer).json()["ponder"][0]["view_url"]
        path = "/ui/" + url.rsplit("/", 1)[1]
        for headers in ({}, {"Authorization": "Bearer nope"},
                        {"Authorization": "Basic " + base64.b64encode(b"x:nope").decode()},
                        {"Authorization": "Basic !!!"}):
            for suffix in ("", "/data"):
                denied = http.get(path + suffix, headers=headers)
                assert denied.status_code == 401, headers
                assert denied.headers["www-authenticate"].startswith("Basic realm=")
                assert "trace" not in denied.text and "2 + 3" not in denied.text
        assert http.get(path, headers=bearer).status_code == 200
        basic = {"Authorization": "Basic " + base64.b64encode(b"anyone:sesame").decode()}
        assert http.get(path + "/data", headers=basic).status_code == 200
        for wrong in ("/ui/" + "0" * 32, "/ui/nope", "/ui/" + "A" * 32, path + "x"):
            missing = http.get(wrong, headers=bearer)
            assert missing.status_code == 404 and "2 + 3" not in missing.text


def test_the_store_keeps_only_the_most_recent_pages():
    server = PonderServer(ScriptedBackend(arithmetic), max_views=2)
    with TestClient(server.app()) as http:
        urls = [http.post("/v1/chat/completions", json=ASK).json()["ponder"][0]["view_url"]
                for _ in range(3)]
        codes = [http.get("/ui/" + u.rsplit("/", 1)[1]).status_code for u in urls]
    assert codes == [404, 200, 200] and len(server.views) == 2


def test_expired_pages_are_gone():
    server = PonderServer(ScriptedBackend(arithmetic), view_seconds=0.05)
    with TestClient(server.app()) as http:
        url = http.post("/v1/chat/completions", json=ASK).json()["ponder"][0]["view_url"]
        time.sleep(0.1)
        assert http.get("/ui/" + url.rsplit("/", 1)[1]).status_code == 404


def test_the_page_follows_a_running_search():
    """A stream announces the page first; the page shows the search while it waits for the
    backend, and the finished run once it is done."""
    backend = GatedBackend(arithmetic)
    with Live(backend) as server:
        body = {**ASK, "model": "ponder-adaptive-consistency", "stream": True,
                "ponder": {"trace": True, "options": {"wave": 2, "max_n": 4,
                                                      "threshold": 0.99}}}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as stream:
                lines = stream.iter_lines()
                first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
                url = first["ponder"]["view_url"]
                assert url.startswith(server.url + "/ui/")
                deadline = time.monotonic() + 10
                while True:  # the first wave is in the trace; the second waits on the gate
                    running = http.get(url + "/data").json()["views"][0]
                    if any(n["label"].startswith("after wave 1") for n in running["nodes"]):
                        break
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                assert running["status"] == "running" and running["answer"] is None
                page = http.get(url)
                assert "connect-src 'self'" in page.headers["content-security-policy"]
                assert page_data(page.text)["live"]["data"].endswith("/data")
                backend.gate.set()
                rest = "".join(lines)
                assert "[DONE]" in rest
        with httpx.Client(timeout=30) as http:
            done = http.get(url + "/data").json()["views"][0]
    assert done["status"] == "done" and done["answer"] == "5"
    assert done["waves"]["points"] and done["groups"][0]["winner"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_request_says_so_on_its_page(stream):
    from ponder.errors import BackendError

    def broken(request, index):
        raise BackendError("upstream said no")

    server = PonderServer(ScriptedBackend(broken))
    with TestClient(server.app()) as http:
        reply = http.post("/v1/chat/completions", json={**ASK, "stream": stream})
        [view] = server.views._views.values()
        assert reply.status_code == (200 if stream else 502)
        data = http.get(f"/ui/{view.id}/data").json()["views"][0]
    assert data["status"].startswith("failed") and "upstream said no" not in json.dumps(data)


def test_the_live_page_shows_each_candidate_as_it_finishes():
    """self-consistency draws its 3 samples in one call: the first two finish, the third waits;
    the live page already shows the two (their text and the answer read from it) while the
    search runs, and all three, voted, once it is done."""
    backend = TrickleBackend(arithmetic)
    with Live(backend) as server:
        body = {**ASK, "stream": True}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as stream:
                lines = stream.iter_lines()
                first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
                url = first["ponder"]["view_url"]
                deadline = time.monotonic() + 10
                while True:
                    running = http.get(url + "/data").json()["views"][0]
                    if len(running["candidates"]) == 2:
                        break
                    assert time.monotonic() < deadline, running["candidates"]
                    time.sleep(0.02)
                assert running["status"] == "running" and running["answer"] is None
                assert [c["answer"] for c in running["candidates"]] == ["5", "5"]
                assert [c["text"] for c in running["candidates"]] == [
                    "2 plus 3 makes 5. The answer is: 5"] * 2
                assert running["candidates"][0]["tokens"] == 9
                assert "answers" in running["sections"]
                assert [(g["answer"], g["count"]) for g in running["groups"]] == [("5", 2)]
                assert not any(g["winner"] for g in running["groups"])  # nothing voted yet
                assert "as each one finished" in running["note"]
                backend.gate.set()
                assert "[DONE]" in "".join(lines)
        with httpx.Client(timeout=30) as http:
            done = http.get(url + "/data").json()["views"][0]
    assert done["status"] == "done" and done["answer"] == "5" and done["note"] is None
    assert len(done["candidates"]) == 3 and done["groups"][0]["winner"]
