"""The HTTP API contract: every request and reply as a pydantic model.

Routes (all under the server's base_url, all authenticated, JSON):

- ``GET  /copilot/status``                 -> :class:`StatusReply`
- ``POST /copilot/complete``               :class:`CompleteRequest` -> :class:`CompleteReply`
- ``POST /copilot/complete?stream=1``      same request -> NDJSON lines of :class:`StreamChunk`
- ``POST /copilot/explain``                :class:`ExplainRequest` -> NDJSON :class:`StreamChunk`
  (``?stream=0`` -> :class:`ExplainReply`)
- ``POST /copilot/warm``                   :class:`WarmRequest` -> 202 (pre-fills the KV cache)

Field names are a contract shared with the frontend (``labextension/src/api.ts``),
the benchmarks and admins' scripts: add fields freely, rename none.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Why these limits: a notebook cell is rarely above a few KB; anything far bigger is
# a paste of data, and feeding it to a CPU model costs seconds per KB. The request
# body as a whole is capped by the `max_request_bytes` trait (413).
MAX_SOURCE_CHARS = 100_000
MAX_CONTEXT_CELLS = 500
MAX_TRACEBACK_LINE_CHARS = 20_000


class _Request(BaseModel):
    # Unknown fields are ignored so that newer frontends work with older servers.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class ContextCell(_Request):
    """A cell the server may use as context (earlier cells in notebook order)."""

    cell_type: Literal["code", "markdown", "raw"] = "code"
    source: str = Field(max_length=MAX_SOURCE_CHARS)


# --- the kernel's live namespace (issue 14) -------------------------------------------
# What the notebook's kernel knows and the code does not say (DataFrame columns, dict
# keys...), collected by the frontend after each execution (context/kernel_probe.py).
# On the campus path it is just more untrusted prompt text: bounded here, then cut to
# a token budget where it enters the prompt (context/namespace.py).
MAX_NAMESPACE_ENTRIES = 64


class NamespaceEntry(_Request):
    name: str = Field(max_length=128)
    summary: str = Field(max_length=600)


class CompleteRequest(_Request):
    prefix: str = Field(max_length=MAX_SOURCE_CHARS, description="cell text before the cursor")
    suffix: str = Field("", max_length=MAX_SOURCE_CHARS, description="cell text after the cursor")
    language: str = Field("python", max_length=64)
    path: Optional[str] = Field(None, max_length=4096, description="notebook or file path")
    cell_id: Optional[str] = Field(None, max_length=256)
    context_cells: list[ContextCell] = Field(default_factory=list, max_length=MAX_CONTEXT_CELLS)
    mode: Optional[Literal["line", "block"]] = Field(
        None, description="None lets the server decide from the code around the cursor"
    )
    max_tokens: Optional[int] = Field(None, ge=1, le=1024)
    # Identifies one editor (notebook cell or file editor) in one browser tab. A newer
    # request with the same editor_id cancels the older one on the server.
    editor_id: Optional[str] = Field(None, max_length=256)
    request_id: Optional[str] = Field(None, max_length=128, description="echoed as `id`")
    kernel_namespace: list[NamespaceEntry] = Field(
        default_factory=list, max_length=MAX_NAMESPACE_ENTRIES,
        description="the kernel's live names after the last execution (issue 14)",
    )
    # engine: the user's line limit (frontend setting); the server applies the smaller
    # of it and its own `max_lines` in post-processing, and stops generating there.
    max_lines: Optional[int] = Field(None, ge=1, le=200)
    # Asked ahead of the student (issue 14, item 4): the frontend sends it when the
    # student settles in a cell, while they type, and after a suggestion accepted at
    # a line end. The server remembers the answer for the editor's next request
    # (reuse.py); the reply is not shown. Where nothing would remember it (no
    # `editor_id`, or `reuse_suggestions` off) the server warms the cell up instead.
    ahead: bool = Field(False, description="a suggestion asked ahead, remembered for the editor's next request")

    def warm_request(self) -> "WarmRequest":
        """The warm-up that prepares this request (the inverse of
        `WarmRequest.completion_request`): through the cursor, as while typing."""
        return WarmRequest(
            prefix=self.prefix, suffix=self.suffix, language=self.language, path=self.path,
            context_cells=self.context_cells, kernel_namespace=self.kernel_namespace,
            through_cursor=True,
        )


class WarmRequest(_Request):
    """Pre-fill the engine's prompt cache with what the next completion starts with."""

    path: Optional[str] = Field(None, max_length=4096)
    language: str = Field("python", max_length=64)
    context_cells: list[ContextCell] = Field(default_factory=list, max_length=MAX_CONTEXT_CELLS)
    kernel_namespace: list[NamespaceEntry] = Field(
        default_factory=list, max_length=MAX_NAMESPACE_ENTRIES
    )
    # The student's cell around the cursor, as a completion would send it (issue 14,
    # item 4): the warm-up then also evaluates the cell's lines above the cursor's
    # line, and the first request there pays only for the line being typed. Empty:
    # a new cell.
    prefix: str = Field("", max_length=MAX_SOURCE_CHARS)
    suffix: str = Field("", max_length=MAX_SOURCE_CHARS)
    # While the student types on the line (the frontend's typing warm-up): evaluate
    # up to the word being typed, not only up to the line, so that the completion
    # asked at the next pause pays for that word and the prompt's tail alone.
    through_cursor: bool = False

    def completion_request(self) -> CompleteRequest:
        """The completion this warm-up prepares (the mode changes nothing before the
        cursor's line)."""
        return CompleteRequest(
            prefix=self.prefix, suffix=self.suffix, language=self.language, path=self.path,
            context_cells=self.context_cells, kernel_namespace=self.kernel_namespace,
            mode="line",
        )


class ErrorInfo(_Request):
    ename: str = Field("", max_length=1000)
    evalue: str = Field("", max_length=MAX_SOURCE_CHARS)
    # Each line bounded too (core): a single 10 MB "line" is no traceback.
    traceback: list[Annotated[str, Field(max_length=MAX_TRACEBACK_LINE_CHARS)]] = Field(
        default_factory=list, max_length=1000
    )


# -- conversation and course material (issue 13) -------------------------------------
# Why these bounds: a follow-up is a sentence or two; a history longer than a few
# exchanges is cut to the history budget anyway (conversation.py), so more would only
# cost parsing.
MAX_QUESTION_CHARS = 4_000
MAX_HISTORY_TURNS = 24
MAX_TURN_CHARS = 8_000


class HistoryTurn(_Request):
    """One earlier turn of the conversation in a panel, as the browser kept it.

    `assistant` turns count only with the `signature` the server gave them (the
    `signature` of the reply that wrote them): the server never trusts a role it did
    not produce, so a student cannot put words in the assistant's mouth."""

    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_TURN_CHARS)
    signature: Optional[str] = Field(None, max_length=128)


class Source(BaseModel):
    """A passage of the course material an answer was grounded in (cited in the panel)."""

    path: str
    cell_index: Optional[int] = None
    title: Optional[str] = None
    excerpt: Optional[str] = None


class ExplainRequest(_Request):
    # "question": a follow-up under an explanation, or a free question about the
    # notebook (`question`, optional `history`); policy feature "ask".
    kind: Literal["cell", "error", "question"]
    # The cell: required to explain one, optional with a question (then "").
    source: str = Field(None, max_length=MAX_SOURCE_CHARS, validate_default=True)  # type: ignore[assignment]
    # validate_default: so that a missing `error` with kind "error" is reported.
    error: Optional[ErrorInfo] = Field(None, validate_default=True)
    context_cells: list[ContextCell] = Field(default_factory=list, max_length=MAX_CONTEXT_CELLS)
    language: Optional[Literal["fr", "en"]] = None
    path: Optional[str] = Field(None, max_length=4096)
    editor_id: Optional[str] = Field(None, max_length=256)
    request_id: Optional[str] = Field(None, max_length=128)
    question: Optional[str] = Field(None, max_length=MAX_QUESTION_CHARS, validate_default=True)
    history: list[HistoryTurn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    # As completions send it: an explanation written after the notebook
    # (`explain_after_notebook`) shows the notebook as they do, kernel names included,
    # so that it finds their prompt in the cache up to the end of the cell.
    kernel_namespace: list[NamespaceEntry] = Field(
        default_factory=list, max_length=MAX_NAMESPACE_ENTRIES
    )

    @field_validator("source", mode="before")
    @classmethod
    def _source_unless_question(cls, value, info: ValidationInfo):
        if value is None:
            if info.data.get("kind") != "question":
                raise ValueError("required to explain a cell or an error")
            return ""
        return value

    @field_validator("question", mode="after")
    @classmethod
    def _question_for_questions(cls, value: Optional[str], info: ValidationInfo):
        if info.data.get("kind") == "question" and not (value or "").strip():
            raise ValueError("required when kind is 'question'")
        return value

    @field_validator("error", mode="after")
    @classmethod
    def _error_needs_details(cls, value: Optional[ErrorInfo], info: ValidationInfo):
        if info.data.get("kind") == "error" and value is None:
            raise ValueError("required when kind is 'error' ({ename, evalue, traceback})")
        return value


# done: finished normally (end of text or a stop string); stopped_by_filter: the
# post-processing had what it needed (first line, max lines, the suffix reached);
# max_tokens: the token limit; cancelled: a newer request or a closed connection.
StopReason = Literal["done", "cancelled", "stopped_by_filter", "max_tokens", "error"]


class Timing(BaseModel):
    """Where the time went, in milliseconds, plus token counts (frugality)."""

    queued_ms: float = 0.0
    first_token_ms: Optional[float] = None
    total_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    # Served from the editor's last suggestion, which the student is typing through
    # (no engine call; see reuse.py).
    reused: bool = False


class CompleteReply(BaseModel):
    id: Optional[str] = None
    text: str
    model: str
    mode: Literal["line", "block"]
    timing: Timing
    stop_reason: Optional[str] = None


class ExplainReply(BaseModel):
    id: Optional[str] = None
    text: str
    model: str
    timing: Timing
    # Issue 13: the course passages used, the signature to send back with this answer
    # as an `assistant` history turn, and how many old turns the history budget left out.
    sources: Optional[list[Source]] = None
    signature: Optional[str] = None
    history_dropped: Optional[int] = None


class StreamChunk(BaseModel):
    """One NDJSON line of a stream. `text` is the whole cleaned text so far."""

    id: Optional[str] = None
    text: str = ""
    done: bool = False
    error: Optional[str] = None
    model: Optional[str] = None
    timing: Optional[Timing] = None
    # -- core: typed outcomes (on the final chunk, `done: true`) --------------------
    # Why the stream ended; `error` stays the human message (set for "cancelled" and
    # "error" as before), `code` its stable code (see jupyter_copilot/errors.py).
    stop_reason: Optional[StopReason] = None
    mode: Optional[Literal["line", "block"]] = None  # completions: decided once by the server
    code: Optional[str] = None
    # Explanations and questions only (see ExplainReply).
    sources: Optional[list[Source]] = None
    signature: Optional[str] = None
    history_dropped: Optional[int] = None


class ModelCard(BaseModel):
    """What a student or teacher should know about the model that answers them."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    name: str
    family: str
    parameters: Optional[str] = None
    quantization: Optional[str] = None
    licence: Optional[str] = None
    licence_url: Optional[str] = None
    open_weights: Optional[bool] = None
    open_code: Optional[bool] = None
    open_data: Optional[bool] = None
    path: Optional[str] = None
    size_bytes: Optional[int] = None
    sha256: Optional[str] = None
    engine: Optional[str] = None
    notes: Optional[str] = None


class StatusReply(BaseModel):
    # The engine's state (`engines.base.EngineState`): "starting" (loading), "ready",
    # "error" (gave up; see detail), "disabled"; and, since the fault watchdog,
    # "restarting" (loading again after a crash or a hang) and "unresponsive" (no sign
    # of life within the stall timeout; being killed and restarted). A client may
    # treat both like "starting": retry in a few seconds.
    state: Literal["starting", "ready", "error", "disabled", "restarting", "unresponsive"]
    model: Optional[ModelCard] = None
    features: dict[str, Any] = Field(default_factory=dict)
    detail: Optional[str] = None
    version: Optional[str] = None


class ErrorReply(BaseModel):
    error: str
    field: Optional[str] = None
    status: int
    # -- core: a stable code beside the message, and the policy's reason on its own
    code: str = "internal"
    reason: Optional[str] = None


# -- adversary: the editor a completion request comes from ---------------------------------
def editor_of(req: CompleteRequest) -> Optional[str]:
    """The editor a completion belongs to ("the newest request of an editor wins", in
    the service and in the campus admission queue): its id, else its notebook cell."""
    return req.editor_id or (f"{req.path}#{req.cell_id}" if req.cell_id else None)
