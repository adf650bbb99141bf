"""Quality and latency benchmarks: `jupyter copilot bench humaneval|notebooks`.

Every product measurement goes through the code students get (prompt building,
engine, post-processing); the "raw" and "anchor" variants are references the
product is compared with, never a replacement for it.

- `humaneval`: HumanEval infilling, pass@1 by execution and first-line exact match.
- `replay`: a notebook folder replayed top to bottom, completions at seeded cursors,
  against our server and against llama-server's ``/infill`` on the same targets.
"""
