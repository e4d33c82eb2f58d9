"""The request body of ``POST /v1/chat/completions``, validated with pydantic.

The standard OpenAI fields are accepted (those that do not apply to a reasoning search, such as
``presence_penalty``, are accepted and ignored, so existing clients work unchanged); a field
OpenAI does not define is refused, as OpenAI refuses it. ponder's own knobs travel in ``ponder``.

An assistant message comes back as the client received it: the SDK's cookbook loop appends
``reply.choices[0].message`` to ``messages``, and that object carries every field of the reply
(``reasoning``, ``reasoning_content``, ``refusal``, ``annotations``, ``audio``,
``function_call``, ``tool_calls`` with their ``index``, and the SDK's own ``parsed``). Those are
accepted on an assistant message and ignored, save ``content`` and ``tool_calls``: the
conversation's history is what was said and called, not the search that chose it (a reasoning
model's own reasoning is not fed back either).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


FUNCTION_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field("", max_length=1_000_000)


class ToolCall(BaseModel):
    """A call an earlier assistant turn made."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(_Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_asked(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object")
        return self


# What an assistant message the server (or the SDK, accumulating it) wrote carries besides its
# content and calls: accepted back on an assistant message, and not read.
ASSISTANT_ONLY = ("reasoning", "refusal", "annotations", "audio", "function_call", "parsed")


def forwarded_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages (dumped) as an upstream server gets them: an earlier reply's reasoning and the
    SDK's own fields left out, a tool call as id, type and function only (the history is the
    turns' content and calls, as when ponder answers itself)."""
    out = []
    for message in messages:
        message = {k: v for k, v in message.items()
                   if k not in ASSISTANT_ONLY and k != "reasoning_content"}
        if message.get("tool_calls"):
            message["tool_calls"] = [{k: call[k] for k in ("id", "type", "function") if k in call}
                                     for call in message["tool_calls"]]
        out.append(message)
    return out


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    # an earlier reply's fields, as the SDK sends its message object back (ignored)
    reasoning: str | None = None
    refusal: str | None = None
    annotations: list[Any] | None = None
    audio: Any = None
    function_call: Any = None
    parsed: Any = None  # the SDK's parse() helper's own field

    @field_validator("audio", "function_call")
    @classmethod
    def _never_written(cls, value: Any, info: ValidationInfo) -> None:
        """The server answers no audio, nor the deprecated single ``function_call``
        (``tool_calls`` instead): those come back null, or not at all."""
        if value is not None:
            raise ValueError(f"this server writes no {info.field_name!r}; it must be null")
        return None

    @model_validator(mode="after")
    def _an_assistants_fields(self) -> ChatMessage:
        if self.role != "assistant":
            for key in ASSISTANT_ONLY:
                if getattr(self, key) is not None:
                    raise ValueError(f"only an assistant message has {key!r}")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))


class StreamOptions(_Strict):
    include_usage: bool = False


class PonderOptions(_Strict):
    """ponder's own knobs: which strategy, how much compute."""

    strategy: str | None = None
    n: int | None = Field(None, ge=1, description="samples / candidates (capped by the server)")
    budget: int | None = Field(None, ge=1, le=10_000_000,
                               description="total tokens over every internal call")
    max_seconds: float | None = Field(None, gt=0, le=3600)
    verifier: str | None = None
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="any strategy option, as -o KEY=VALUE")
    trace: bool = Field(False, description="return the whole trace in the response")


class ChatCompletionRequest(_Strict):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=8)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=10_000_000)
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None
    ponder: PonderOptions | None = None

    @field_validator("messages")
    @classmethod
    def _tool_results_answer_calls(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        for i, m in enumerate(messages):
            if m.role == "tool" and not m.tool_call_id:
                raise ValueError(f"message {i} (role 'tool') needs a 'tool_call_id'")
            if m.tool_calls and m.role != "assistant":
                raise ValueError(f"message {i}: only an assistant message has 'tool_calls'")
        return messages

    @field_validator("messages")
    @classmethod
    def _has_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in messages):
            raise ValueError("needs at least one user message with text")
        return messages
