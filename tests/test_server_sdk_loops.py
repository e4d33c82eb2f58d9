"""What a user of the official openai SDK sees against a live ``ponder serve`` (issue 33, items
1-3): conversations and tool loops written as the cookbook writes them (the reply's message
appended to ``messages``; ``input += response.output``), streamed and not; a Responses stream that
tells the search while it runs and ends an incomplete response as OpenAI ends one; a token cap
spent on fewer, complete chains; and ``finish_reason: length`` for an answer whose chain was
cut."""

import asyncio
import json
import re
import threading

import httpx
import pytest
from test_server import Live as ServerLive

from ponder import ScriptedBackend

openai = pytest.importorskip("openai")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
RESP_TOOL = {"type": "function", "name": "get_weather",
             "parameters": WEATHER["function"]["parameters"]}
ASK_WEATHER = "What is the weather in Paris?"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
# a chain of 68 words that ends with its answer
LONG_CHAIN = "Let me add them. " + "Seventeen plus five, carefully. " * 15 + "The answer is: 22"


class Live(ServerLive):
    """test_server's live server, keeping its backend at hand."""

    def __init__(self, backend, **settings):
        super().__init__(backend, **settings)
        self.backend = backend
        self.clients = []

    def client(self, statuses=None):
        """The SDK's client (closed with the server); ``statuses``: a list each HTTP reply's
        status is appended to."""
        hooks = {"response": [lambda reply: statuses.append(reply.status_code)]} \
            if statuses is not None else {}
        self.clients.append(openai.OpenAI(base_url=self.url + "/v1", api_key="unused",
                                          max_retries=0,
                                          http_client=httpx.Client(event_hooks=hooks)))
        return self.clients[-1]

    def __exit__(self, *exc):
        for client in self.clients:
            client.close()
        super().__exit__(*exc)


def get_weather(city: str) -> str:
    """The tool the loops call."""
    return f"18C and sunny in {city}"


def weather_agent(request, index):
    """Calls get_weather for a question; answers from the tool's result once it has one."""
    last = request.messages[-1].content
    found = re.search(r"<tool_response>\n(.*)\n</tool_response>", last, re.S)
    if found:
        return f"The tool says so. The answer is: {found.group(1)}"
    return CALL


def arithmetic_chat(request, index):
    """Answers 'What is A + B?', then 'And times C?' about the answer it gave before."""
    turns = request.messages
    last = turns[-1].content
    asked = re.search(r"What is (\d+) \+ (\d+)\?", last)
    if asked:
        total = int(asked[1]) + int(asked[2])
        return f"{asked[1]} plus {asked[2]} makes {total}. The answer is: {total}"
    times = re.search(r"And times (\d+)\?", last)
    before = [m.content for m in turns if m.role == "assistant"]
    if times and before and before[-1].isdigit():
        product = int(before[-1]) * int(times[1])
        return f"{before[-1]} times {times[1]} makes {product}. The answer is: {product}"
    return "I do not know. The answer is: none"


def turns_seen(backend, k=-1):
    """The (role, content) turns of the k-th request the backend received, without the system
    prompt."""
    return [(m.role, m.content) for m in backend.history[k].messages if m.role != "system"]


# -- item 1: the SDK's cookbook conversations ---------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
def test_a_two_turn_chat_sends_the_reply_back_as_the_sdk_returned_it(streamed):
    with Live(ScriptedBackend(arithmetic_chat)) as live:
        statuses, replies = [], []
        client = live.client(statuses)
        messages = [{"role": "user", "content": "What is 2 + 3?"}]
        for question in (None, "And times 4?"):
            if question:
                messages.append({"role": "user", "content": question})
            ask = {"model": "ponder-self-consistency", "messages": messages,
                   "extra_body": {"ponder": {"n": 2}}}
            if streamed:
                with client.chat.completions.stream(**ask) as stream:
                    message = stream.get_final_completion().choices[0].message
            else:
                message = client.chat.completions.create(**ask).choices[0].message
            replies.append(message.content)
            messages.append(message)  # the cookbook pattern: the reply as the SDK returned it
        second = turns_seen(live.backend)
    assert statuses == [200, 200]
    assert replies == ["5", "20"]
    # the earlier turn is what was said; the search that chose it is not fed back
    assert second == [("user", "What is 2 + 3?"), ("assistant", "5"), ("user", "And times 4?")]


def run_chat_tool_loop(client, streamed):
    """The SDK's tool loop as a user writes it: the calls run, their results sent back, until the
    model answers in text."""
    messages = [{"role": "user", "content": ASK_WEATHER}]
    calls = []
    for _ in range(3):
        ask = {"model": "ponder-self-consistency", "messages": messages, "tools": [WEATHER],
               "extra_body": {"ponder": {"n": 2}}}
        if streamed:
            with client.chat.completions.stream(**ask) as stream:
                choice = stream.get_final_completion().choices[0]
        else:
            choice = client.chat.completions.create(**ask).choices[0]
        message = choice.message
        messages.append(message)
        if not message.tool_calls:
            return message.content, choice.finish_reason, calls
        for call in message.tool_calls:
            arguments = json.loads(call.function.arguments)
            calls.append((call.function.name, arguments))
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": get_weather(**arguments)})
    raise AssertionError("the loop did not end")


@pytest.mark.parametrize("streamed", [False, True])
def test_the_chat_tool_loop_answers_from_the_tools_result(streamed):
    with Live(ScriptedBackend(weather_agent)) as live:
        answer, finish, calls = run_chat_tool_loop(live.client(), streamed)
        last = turns_seen(live.backend)
    assert calls == [("get_weather", {"city": "Paris"})]
    assert answer == "18C and sunny in Paris"
    assert finish == "stop"
    assert last[-1] == ("user", "<tool_response>\n18C and sunny in Paris\n</tool_response>")


def run_responses_tool_loop(client, streamed):
    """The Responses tool loop as a user writes it: ``input += response.output``, then a
    ``function_call_output`` per call."""
    items = [{"role": "user", "content": ASK_WEATHER}]
    calls = []
    for _ in range(3):
        ask = {"model": "ponder-self-consistency", "input": items, "tools": [RESP_TOOL],
               "extra_body": {"ponder": {"n": 2}}}
        if streamed:
            with client.responses.stream(**ask) as stream:
                response = stream.get_final_response()
        else:
            response = client.responses.create(**ask)
        items += response.output
        asked = [item for item in response.output if item.type == "function_call"]
        if not asked:
            return response, calls
        for call in asked:
            arguments = json.loads(call.arguments)
            calls.append((call.name, arguments))
            items.append({"type": "function_call_output", "call_id": call.call_id,
                          "output": get_weather(**arguments)})
    raise AssertionError("the loop did not end")


@pytest.mark.parametrize("streamed", [False, True])
def test_the_responses_tool_loop_answers_from_the_tools_result(streamed):
    with Live(ScriptedBackend(weather_agent)) as live:
        response, calls = run_responses_tool_loop(live.client(), streamed)
        last = turns_seen(live.backend)
    assert calls == [("get_weather", {"city": "Paris"})]
    assert response.status == "completed"
    assert response.output_text == "18C and sunny in Paris"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert last[-1] == ("user", "<tool_response>\n18C and sunny in Paris\n</tool_response>")


@pytest.mark.parametrize("message, param, said", [
    ({"role": "assistant", "content": "5", "mood": "happy"}, "messages.1.mood",
     "Unrecognized request argument supplied: messages.1.mood"),
    ({"role": "assistant", "content": "5", "audio": {"id": "a1"}}, "messages.1.audio",
     "this server writes no 'audio'; it must be null"),
    ({"role": "user", "content": "5", "reasoning": "I thought"}, "messages.1",
     "only an assistant message has 'reasoning'"),
])
def test_fields_the_server_never_writes_are_still_a_400(message, param, said):
    """Only what the server's own assistant messages carry is accepted back, and only on an
    assistant message."""
    body = {"model": "ponder-self-consistency",
            "messages": [{"role": "user", "content": "What is 2 + 3?"}, message,
                         {"role": "user", "content": "And times 4?"}]}
    with Live(ScriptedBackend(arithmetic_chat)) as live:
        reply = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param and said in error["message"]


# -- item 2: the Responses API under a token cap, streamed as the search runs ------------------


def test_a_token_cap_is_spent_on_fewer_complete_chains():
    # 256 tokens, low effort (4 chains): four chains of 68 words would each be cut near 55
    with Live(ScriptedBackend([LONG_CHAIN] * 4)) as live:
        response = live.client().responses.create(
            model="ponder-self-consistency", input="What is 17 + 5?",
            reasoning={"effort": "low"}, max_output_tokens=256)
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == "22"
    assert response.usage.output_tokens == 68 <= 256
    assert len(response.model_extra["ponder"]["candidates"]) == 1


def test_a_token_cap_counts_what_the_search_writes_not_the_conversation():
    instructions = "Answer briefly. " * 150  # 300 words of prompt, a 100-token cap
    with Live(ScriptedBackend(["17 plus 5 makes 22. The answer is: 22"] * 4)) as live:
        response = live.client().responses.create(
            model="ponder-self-consistency", instructions=instructions,
            input="What is 17 + 5?", max_output_tokens=100, extra_body={"ponder": {"n": 4}})
    assert response.status == "completed"
    assert response.output_text == "22"
    assert response.usage.input_tokens > 300
    assert response.usage.output_tokens == 4 * 9 <= 100


class HeldBackend(ScriptedBackend):
    """Answers as scripted, one sample at a time, and holds the run after its first finished
    sample until the client says it has read of it (``read``; at most 30 s): ``told`` says
    whether the client had, while the run was still going."""

    def __init__(self, script):
        super().__init__(script)
        self.read = threading.Event()
        self.told = None

    async def generate(self, requests, on_progress=None):
        out = []
        for request in requests:
            samples = []
            for i in range(request.n):
                def report(_, completion, i=i, hook=request.on_sample):
                    if hook is not None:
                        hook(i, completion)
                [[sample]] = await super().generate([request.replace(n=1, on_sample=report)])
                samples.append(sample)
                if self.told is None:
                    self.told = await asyncio.to_thread(self.read.wait, 30)
            out.append(samples)
        return out


def test_the_responses_stream_tells_each_candidate_while_the_search_runs():
    backend = HeldBackend(["17 plus 5 makes 22. The answer is: 22"] * 2)
    with Live(backend) as live:
        with live.client().responses.stream(model="ponder-self-consistency",
                                            input="What is 17 + 5?",
                                            extra_body={"ponder": {"n": 2}}) as stream:
            kinds, told = [], []
            for event in stream:
                kinds.append(event.type)
                if event.type == "response.reasoning_summary_text.delta":
                    told.append(event.delta)
                    if "chain 1/2 finished" in event.delta:
                        backend.read.set()  # the run goes on only now
            final = stream.get_final_response()
    assert backend.told is True  # the first candidate was told while the run was held
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.reasoning_summary_part.added"]
    assert kinds[-1] == "response.completed"
    narration = "".join(told)
    assert "chain 1/2 finished · 9 tokens · answer: 22" in narration
    assert "chain 2/2 finished · 9 tokens · answer: 22 · votes so far: 22 ×2" in narration
    assert final.status == "completed" and final.output_text == "22"
    # the final reasoning item holds what was told, then the account of the search
    summary = [part.text for part in final.output[0].summary]
    assert summary[0] in narration and "chain 2/2 finished" in summary[0]
    assert summary[1].startswith("[self-consistency: 2 candidate(s)")


def collapsed(kinds):
    """Event types with runs of the same delta type written once."""
    return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]
            or not k.endswith(".delta")]


def test_an_incomplete_response_streams_the_events_openai_sends():
    with Live(ScriptedBackend([LONG_CHAIN])) as live:
        with live.client().responses.stream(model="ponder-cot", input="What is 17 + 5?",
                                            max_output_tokens=20) as stream:
            events = list(stream)
    kinds = [event.type for event in events]
    assert collapsed(kinds) == [
        "response.created", "response.in_progress",
        "response.output_item.added",  # the reasoning item, at once
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",  # the message
        "response.content_part.added", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.incomplete"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    message_done = events[-2]
    assert message_done.item.type == "message" and message_done.item.status == "incomplete"
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output_text == "".join(e.delta for e in events
                                        if e.type == "response.output_text.delta")
    assert final.output_text.startswith("Let me add them.")
    assert final.usage.output_tokens == 20


# -- item 3: finish_reason length for a cut chain -------------------------------------------------


@pytest.mark.parametrize("chain, finish", [(LONG_CHAIN, "length"),
                                           ("17 plus 5 makes 22. The answer is: 22", "stop")])
def test_the_finish_reason_says_whether_the_answers_chain_was_cut(chain, finish):
    ask = {"model": "ponder-cot", "max_tokens": 32,
           "messages": [{"role": "user", "content": "What is 17 + 5?"}]}
    with Live(ScriptedBackend([chain] * 3)) as live:
        client = live.client()
        reply = client.chat.completions.create(**ask)
        chunks = list(client.chat.completions.create(**ask, stream=True))
        response = client.responses.create(model="ponder-cot", input="What is 17 + 5?",
                                           extra_body={"ponder": {"options": {"max_tokens": 32}}})
    assert reply.choices[0].finish_reason == finish
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == [finish]
    cut = finish == "length"
    assert response.status == ("incomplete" if cut else "completed")
    assert response.incomplete_details == (None if not cut else response.incomplete_details)
    if cut:
        assert response.incomplete_details.reason == "max_output_tokens"
        assert response.output[-1].status == "incomplete"


# -- the bundled model, end to end --------------------------------------------------------------


def test_a_two_turn_chat_on_the_bundled_model(llama):
    with Live(llama) as live:
        client = live.client()
        messages = [{"role": "user", "content": "What is 2 + 3?"}]
        first = client.chat.completions.create(
            model="ponder-cot", messages=messages, max_tokens=16, temperature=0,
            extra_body={"ponder": {"trace": True}})
        messages += [first.choices[0].message, {"role": "user", "content": "And times 4?"}]
        raw = client.chat.completions.with_raw_response.create(
            model="ponder-cot", messages=messages, max_tokens=16, temperature=0)
    chains = [node for node in first.model_extra["ponder"][0]["trace"]["nodes"]
              if node["kind"] == "generate"]
    cut = chains[0]["data"]["finish_reason"] == "length"
    assert first.choices[0].finish_reason == ("length" if cut else "stop")
    assert raw.status_code == 200
    second = raw.parse().choices[0]
    assert second.message.content and second.finish_reason in ("stop", "length")
