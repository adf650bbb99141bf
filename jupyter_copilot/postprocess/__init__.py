"""Post-processing: an ordered pipeline of small pure filters over the model output.

`run_pipeline` is called on the whole raw output so far each time tokens stream in
(``final=False``) and once more at the end (``final=True``); see `base` for the
contract every filter keeps (deterministic, prefix-stable, may hold back a tail).

The order matters:

1. `cut_at_stop_tokens` first: nothing after a special token is code, and half a
   token (``<|fim_``) must never reach the filters below, which would read it as code.
2. The cuts, which each end the completion at the first point where it goes wrong
   (so they commute, and the earliest wins): `single_line_before_suffix` and
   `first_line_only` (cheap, and they stop generation soonest), then
   `stop_at_suffix_closer`, `stop_at_repeated_suffix`, `stop_at_dedent`,
   `limit_lines`.
3. `balance_brackets` once the final extent is known: which brackets are left open or
   unmatched depends on where the text was cut.
4. `drop_suffix_overlap` after balancing: an extra ``)`` is first dropped as
   unmatched, and only then is the end compared with the rest of the line (the
   other order would strip one ``)`` of ``a))`` and keep a doubled one).
5. `strip_trailing_whitespace`, then `drop_blank` on what is left.

Once a filter says ``stop``, the text is complete: the filters after it run with
``final=True`` so that they stop holding back a tail that will never grow.
"""

from __future__ import annotations

from .base import Filter, FilterContext, Step
from .blank import drop_blank
from .block_dedent import stop_at_dedent
from .brackets import balance_brackets
from .line_mode import first_line_only
from .max_lines import limit_lines
from .repeated_suffix import stop_at_repeated_suffix
from .stop_tokens import cut_at_stop_tokens
from .suffix_closers import stop_at_suffix_closer
from .suffix_overlap import drop_suffix_overlap
from .text_after_cursor import single_line_before_suffix
from .trailing_whitespace import strip_trailing_whitespace

PIPELINE: tuple[Filter, ...] = (
    cut_at_stop_tokens,
    single_line_before_suffix,
    first_line_only,
    stop_at_suffix_closer,
    stop_at_repeated_suffix,
    stop_at_dedent,
    limit_lines,
    balance_brackets,
    drop_suffix_overlap,
    strip_trailing_whitespace,
    drop_blank,
)


def run_pipeline(raw: str, ctx: FilterContext, final: bool) -> Step:
    """Clean the whole raw output so far; ``stop`` says generation may be cancelled."""
    text, stop = raw, False
    for step_filter in PIPELINE:
        step = step_filter(text, ctx, final or stop)
        text, stop = step.text, stop or step.stop
    return Step(text, stop)


__all__ = ["PIPELINE", "Filter", "FilterContext", "Step", "run_pipeline"]
