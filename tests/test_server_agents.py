"""ponder serve for agents: tools (pass-through and voted over as actions), tool-result round
trips, JSON-schema output, long conversations and the Responses API, with the official openai
SDK (and the llm CLI) against a live server; malformed tools, schemas and items are 400s."""

import asyncio
import json
import os
import shutil
import subprocess
import sys

import httpx
import jsonschema
import pytest
from test_server import Live as ServerLive

from ponder import ScriptedBackend
from ponder.backends.openai_http import OpenAIBackend

openai = pytest.importorskip("openai")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city, for some days.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "What will the weather be in Paris for two days?"}]
CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n'
        '</tool_call>')
# the same call written differently: key order, a float, no whitespace
SAME_CALL = ('Let me look it up. <tool_call>{"arguments":{"days":2.0,"city":"Paris"},'
             '"name":"get_weather"}</tool_call>')
TEXT = "I think it will be sunny. The answer is: sunny"
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


class Live(ServerLive):
    """test_server's live server, keeping its backend at hand."""

    def __init__(self, backend, **settings):
        super().__init__(backend, **settings)
        self.backend = backend

    def client(self):
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)


def served(script):
    return Live(ScriptedBackend(script))


def seen(backend, k=-1):
    """The (role, content) pairs of the k-th request the backend received."""
    return [(m.role, m.content) for m in backend.history[k].messages]


# -- tools -----------------------------------------------------------------------------------

def test_pass_through_describes_the_tools_and_parses_the_call_back():
    with served([CALL]) as live:
        reply = live.client().chat.completions.create(
            model="scripted", messages=ASK, tools=[WEATHER])
        system = seen(live.backend)[0]
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    assert system[0] == "system" and "<tools>" in system[1] and '"get_weather"' in system[1]


def test_pass_through_streams_the_call_without_leaking_its_markup():
    with served([CALL]) as live:
        stream = live.client().chat.completions.create(
            model="scripted", messages=ASK, tools=[WEATHER], stream=True)
        chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any("<tool_call>" in (d.content or "") for d in deltas)
    calls = [tc for d in deltas for tc in d.tool_calls or ()]
    assert [(tc.index, tc.function.name) for tc in calls] == [(0, "get_weather")]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 2}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_self_consistency_votes_over_actions_and_the_call_wins_two_to_one():
    with served([CALL, SAME_CALL, TEXT]) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER],
            extra_body={"ponder": {"n": 3}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    assert [c["votes"] for c in reply.model_extra["ponder"][0]["candidates"]] == [2, 2, 1]
    assert "(votes 2," in choice.message.model_extra["reasoning_content"]


def test_a_text_answer_wins_when_most_candidates_answer_in_text():
    with served([CALL, TEXT, "Sunny, most likely. The answer is: Sunny"]) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER],
            extra_body={"ponder": {"n": 3}})
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "sunny"
    assert reply.choices[0].message.tool_calls is None


def test_calls_to_unknown_functions_or_with_invalid_arguments_drop_out():
    bad_name = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    bad_args = '<tool_call>{"name": "get_weather", "arguments": {"city": 7}}</tool_call>'
    with served([bad_name, bad_args, bad_args, CALL]) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER],
            extra_body={"ponder": {"n": 4}})
    assert reply.choices[0].finish_reason == "tool_calls"
    votes = [c["votes"] for c in reply.model_extra["ponder"][0]["candidates"]]
    assert votes == [0, 0, 0, 1]


def test_a_call_written_as_a_bare_or_fenced_json_object_counts():
    fenced = 'I will call it.\n```json\n{"name": "get_weather", "arguments": {"city": "Paris", ' \
        '"days": 2}}\n```'
    inline = 'The answer is: {"name": "get_weather", "arguments": {"days": 2, "city": "Paris"}}'
    with served([fenced, inline, TEXT]) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER],
            extra_body={"ponder": {"n": 3}})
    assert [c["votes"] for c in reply.model_extra["ponder"][0]["candidates"]] == [2, 2, 1]


def test_self_consistency_streams_the_winning_call():
    with served([CALL, SAME_CALL, TEXT]) as live:
        chunks = list(live.client().chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER], stream=True,
            extra_body={"ponder": {"n": 3}}))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_required_drops_text_and_none_hides_the_tools():
    with served([TEXT, CALL, TEXT]) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER],
            tool_choice="required", extra_body={"ponder": {"n": 3}})
        assert reply.choices[0].finish_reason == "tool_calls"
    with served([TEXT]) as live:
        reply = live.client().chat.completions.create(
            model="scripted", messages=ASK, tools=[WEATHER], tool_choice="none")
        assert reply.choices[0].message.content == TEXT
        assert "<tools>" not in "".join(text for _, text in seen(live.backend))


def test_a_tool_result_round_trip_continues_the_conversation():
    def answer(request, index):
        last = request.messages[-1].content
        if "<tool_response>" in last:
            return "Paris will be 18 degrees and sunny. The answer is: 18"
        return CALL

    with served(answer) as live:
        client = live.client()
        first = client.chat.completions.create(
            model="ponder-self-consistency", messages=ASK, tools=[WEATHER],
            extra_body={"ponder": {"n": 2}})
        call = first.choices[0].message.tool_calls[0]
        messages = [*ASK, first.choices[0].message.model_dump(exclude_none=True,
                                                               include={"role", "tool_calls"}),
                    {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'}]
        second = client.chat.completions.create(
            model="ponder-self-consistency", messages=messages, tools=[WEATHER],
            extra_body={"ponder": {"n": 2}})
        turns = seen(live.backend)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "18"
    assert [role for role, _ in turns] == ["system", "user", "assistant", "user"]
    assert turns[1][1] == ASK[0]["content"]
    assert '"name": "get_weather"' in turns[2][1] and '"city": "Paris"' in turns[2][1]
    assert turns[3][1] == '<tool_response>\n{"temp": 18}\n</tool_response>'


def test_a_strategy_that_uses_a_judge_scores_actions():
    def answer(request, index):
        if "Proposed final answer" in request.messages[-1].content:
            return "Yes" if "get_weather" in request.messages[-1].content else "No"
        return [TEXT, CALL][index % 2]

    with served(answer) as live:
        reply = live.client().chat.completions.create(
            model="ponder-best-of-n", messages=ASK, tools=[WEATHER],
            extra_body={"ponder": {"n": 2}})
    assert reply.choices[0].finish_reason == "tool_calls"
    assert [c["score"] for c in reply.model_extra["ponder"][0]["candidates"]] == [0.0, 1.0]


# -- structured output -----------------------------------------------------------------------

def test_json_schema_output_is_voted_and_validates():
    candidates = [
        'Here it is: {"name": "Ann", "age": 30}',
        '```json\n{"age": 30.0,\n "name": "Ann"}\n```',
        '{"name": "Bob"}',          # does not validate: drops out
        '{"name": "Bob", "age": 4',  # does not parse: drops out
    ]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                  "strict": True}}
    with served(candidates) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", response_format=fmt,
            messages=[{"role": "user", "content": "Who is the oldest, and how old?"}],
            extra_body={"ponder": {"n": 4}})
        system = seen(live.backend)[0][1]
    value = json.loads(reply.choices[0].message.content)
    jsonschema.validate(value, PERSON)
    assert value == {"name": "Ann", "age": 30}
    assert [c["votes"] for c in reply.model_extra["ponder"][0]["candidates"]] == [2, 2, 0, 0]
    assert '"required": ["name", "age"]' in system


def test_local_references_in_a_schema_are_followed():
    schema = {"type": "object", "$defs": {"age": {"type": "integer", "minimum": 0}},
              "properties": {"age": {"$ref": "#/$defs/age"}}, "required": ["age"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    with served(['{"age": -1}', '{"age": 5}', '{"age": "5"}']) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", response_format=fmt,
            messages=[{"role": "user", "content": "How old?"}], extra_body={"ponder": {"n": 3}})
    assert json.loads(reply.choices[0].message.content) == {"age": 5}
    assert [c["votes"] for c in reply.model_extra["ponder"][0]["candidates"]] == [0, 1, 0]


def test_json_object_pass_through_returns_the_json():
    with served(['Sure! ```json\n{"ok": true}\n```']) as live:
        reply = live.client().chat.completions.create(
            model="scripted", response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "Answer in JSON."}])
    assert json.loads(reply.choices[0].message.content) == {"ok": True}


# -- multi-turn ------------------------------------------------------------------------------

def test_a_long_conversation_reaches_the_backend_in_order():
    messages = [{"role": "system", "content": "You are terse."}]
    for k in range(8):
        messages.append({"role": "user", "content": f"Question {k}: what is {k} + {k}?"})
        messages.append({"role": "assistant", "content": f"The answer is: {2 * k}"})
    messages.append({"role": "user", "content": "And the sum of all those answers?"})
    with served(["The answer is: 56"] * 3) as live:
        reply = live.client().chat.completions.create(
            model="ponder-self-consistency", messages=messages,
            extra_body={"ponder": {"n": 3}})
        turns = seen(live.backend)
    assert reply.choices[0].message.content == "56"
    assert turns == [(m["role"], m["content"]) for m in messages]


def test_every_strategy_sees_the_earlier_turns():
    messages = [{"role": "user", "content": "My number is 41."},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "Add one to my number."}]
    for model in ("ponder-cot", "ponder-best-of-n", "ponder-self-refine"):
        with served(lambda request, index: "Yes. The answer is: 42") as live:
            reply = live.client().chat.completions.create(
                model=model, messages=messages, extra_body={"ponder": {"n": 2}}
                if model == "ponder-best-of-n" else None)
            texts = ["\n".join(m.content for m in r.messages) for r in live.backend.history]
        assert reply.choices[0].message.content == "42"
        assert all("My number is 41." in t and "Add one" in t for t in texts), model


# -- the Responses API -----------------------------------------------------------------------

RESP_TOOL = {"type": "function", "name": "get_weather",
             "parameters": WEATHER["function"]["parameters"]}


def test_responses_votes_over_calls_with_a_reasoning_summary():
    with served([CALL, SAME_CALL, TEXT]) as live:
        response = live.client().responses.create(
            model="ponder-self-consistency", input=ASK[0]["content"],
            instructions="Use tools when you need them.", tools=[RESP_TOOL],
            reasoning={"effort": "low", "summary": "auto"}, extra_body={"ponder": {"n": 3}})
        system = seen(live.backend)[0][1]
    reasoning, call = response.output
    assert reasoning.type == "reasoning"
    summary = reasoning.summary[0].text
    assert "3 candidate(s)" in summary and "(votes 2," in summary
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}
    assert response.status == "completed"
    assert response.usage.output_tokens_details.reasoning_tokens == response.usage.output_tokens
    assert response.usage.output_tokens > 0
    assert system.startswith("Use tools when you need them.")


def test_responses_stream_helper_accumulates_the_events():
    with served([CALL, SAME_CALL, TEXT]) as live:
        with live.client().responses.stream(
                model="ponder-self-consistency", input=ASK[0]["content"], tools=[RESP_TOOL],
                extra_body={"ponder": {"n": 3}}) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.reasoning_summary_text.delta" in kinds
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-1] == "response.completed"
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    assert json.loads(final.output[1].arguments) == {"city": "Paris", "days": 2}


def test_responses_text_streamed_and_a_function_call_output_round_trip():
    def answer(request, index):
        if "<tool_response>" in request.messages[-1].content:
            return "It is 18 degrees. The answer is: 18"
        return CALL

    items = [{"role": "user", "content": ASK[0]["content"]},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather",
              "arguments": '{"city": "Paris", "days": 2}'},
             {"type": "function_call_output", "call_id": "call_1", "output": "18C"}]
    with served(answer) as live:
        with live.client().responses.stream(model="scripted", input=items,
                                            tools=[RESP_TOOL]) as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
        turns = seen(live.backend)
    assert final.output_text == "It is 18 degrees. The answer is: 18" == "".join(deltas)
    assert [role for role, _ in turns] == ["system", "user", "assistant", "user"]
    assert turns[3][1] == "<tool_response>\n18C\n</tool_response>"


def test_responses_json_schema_format():
    with served(['{"name": "Ann", "age": 30}'] * 2) as live:
        response = live.client().responses.create(
            model="ponder-self-consistency", input="Who?",
            text={"format": {"type": "json_schema", "name": "person", "schema": PERSON,
                             "strict": True}}, extra_body={"ponder": {"n": 2}})
    assert json.loads(response.output_text) == {"name": "Ann", "age": 30}


# -- a native tool-calling backend: forwarded as written -------------------------------------

def test_pass_through_forwards_tools_to_an_openai_compatible_server():
    """The front server's backend is an OpenAI-compatible server (here a second ponder serve,
    which answers tool calls): tools go through untouched, tool_calls come back and stream."""
    with served([CALL, CALL, CALL]) as upstream:
        backend = OpenAIBackend("scripted", upstream.url + "/v1", probe=False, max_retries=0)
        with Live(backend) as front:
            client = front.client()
            reply = client.chat.completions.create(model="scripted", messages=ASK,
                                                   tools=[WEATHER], tool_choice="auto")
            chunks = list(client.chat.completions.create(
                model="scripted", messages=ASK, tools=[WEATHER], stream=True))
            response = client.responses.create(model="scripted", input=ASK[0]["content"],
                                               tools=[RESP_TOOL])
            # the backend's client lives on the front server's loop: closed there
            loop = front.uvicorn.servers[0].get_loop()
            asyncio.run_coroutine_threadsafe(backend.aclose(), loop).result(10)
    [item] = response.output
    assert item.type == "function_call" and json.loads(item.arguments)["city"] == "Paris"
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 2}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- the llm CLI -----------------------------------------------------------------------------

def test_the_llm_cli_through_extra_openai_models(tmp_path):
    """llm's own OpenAI client, a plain prompt and its tool loop (a Python function it runs)."""
    llm = shutil.which("llm") or os.path.join(os.path.dirname(sys.executable), "llm")
    if not os.path.exists(llm):
        pytest.skip("the llm CLI is not installed")

    def answer(request, index):
        last = request.messages[-1].content
        if "<tool_response>" in last:
            return f"It is {last.split()[1]} there. The answer is: {last.split()[1]}"
        if "<tools>" in request.messages[0].content:
            return '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
        return "17 plus 5 is 22. The answer is: 22"

    with served(answer) as live:
        (tmp_path / "extra-openai-models.yaml").write_text(
            f"- model_id: ponder-sc\n  model_name: ponder-self-consistency\n"
            f"  api_base: {live.url}/v1\n  api_key_name: ponder\n  supports_tools: true\n")
        (tmp_path / "keys.json").write_text('{"ponder": "unused"}')
        env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
        plain = subprocess.run([llm, "-m", "ponder-sc", "-o", "max_tokens", "200",
                                "What is 17 + 5?"], env=env, capture_output=True, text=True,
                               timeout=60)
        tools = subprocess.run([llm, "-m", "ponder-sc", "--functions",
                                "def get_weather(city: str) -> str:\n    return '18C'",
                                "What is the weather in Paris?"], env=env,
                               capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "22"
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.strip() == "18C"


# -- malformed requests: OpenAI-style 400s ---------------------------------------------------

BAD_CHAT = [
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f",
                                                  "parameters": {"type": "nope"}}}]},
     "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f",
                                                  "parameters": {"$ref": "#/nowhere"}}}]},
     "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "string", "pattern": "(unclosed"}}}]}, "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}}}]},
     "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}}]},
     "tools.0.function.parameters"),
    ({"tools": [WEATHER, WEATHER]}, "tools.1.function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": "get_weather"}, "tools"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": 5}}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"messages": [*ASK, {"role": "tool", "content": "18C"}]}, "messages"),
    ({"messages": [*ASK, {"role": "assistant", "tool_calls": [{"type": "function"}]}]},
     "messages.1.tool_calls.0.id"),
]
BAD_RESPONSES = [
    ({"input": [{"type": "image_generation_call"}]}, "input.0.type"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input.0.call_id"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input.0.role"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
     "input.0.content.0.text"),
    ({"input": [7]}, "input.0"),
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "nope"}}]},
     "tools.0.function.parameters"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": []}, "input"),
]


@pytest.mark.parametrize(("extra", "param"), BAD_CHAT)
def test_malformed_chat_requests_are_400(extra, param):
    with served([]) as live:
        body = {"model": "ponder-self-consistency", "messages": ASK, **extra}
        reply = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=10)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(("extra", "param"), BAD_RESPONSES)
def test_malformed_responses_requests_are_400(extra, param):
    with served([]) as live:
        body = {"model": "ponder-self-consistency", "input": "hi", **extra}
        reply = httpx.post(live.url + "/v1/responses", json=body, timeout=10)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param == "previous_response_id":
        assert "does not store responses" in error["message"]
