"""Notebook -> prompt: cells, token budget, line/block mode (see `prompt` for the layout).

Public API used by the service: `build_completion_prompt`, `build_warm_prompt`,
`build_notebook_document`, `decide_mode`, `decide_request_mode`,
`ahead_through_next_line`, `writes_next_line`, `estimate_tokens`, `CompletionPrompt`,
and `filter_context` (the matching post-processing context).
"""

from .mode import ahead_through_next_line, decide_mode, decide_request_mode, writes_next_line
from .prompt import (
    CompletionPrompt,
    build_completion_prompt,
    build_notebook_document,
    build_warm_prompt,
    filter_context,
)
from .tokens import estimate_tokens

__all__ = [
    "CompletionPrompt",
    "ahead_through_next_line",
    "build_completion_prompt",
    "build_notebook_document",
    "build_warm_prompt",
    "decide_mode",
    "decide_request_mode",
    "estimate_tokens",
    "filter_context",
    "writes_next_line",
]
