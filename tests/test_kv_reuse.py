"""The KV cache reuse plan (which cached tokens a new prompt keeps, and where)."""

from __future__ import annotations

from jupyter_copilot.engines.kv_reuse import Move, common_prefix_len, plan_reuse

HEADER = list(range(1000, 1010))
A = list(range(100, 140))  # 40 tokens each: "cells"
B = list(range(200, 240))
C = list(range(300, 340))
TAIL = [7, 8, 9]


def test_prefix_only_without_moves():
    plan = plan_reuse(HEADER + A + B, HEADER + B, min_tokens=0)
    assert plan.prefix == len(HEADER)
    assert plan.moves == ()
    assert plan.reused == len(HEADER)


def test_the_window_sliding_moves_the_cells_that_stay():
    # The oldest cell left the window: B and C move left over it.
    cached = HEADER + A + B + C + TAIL
    prompt = HEADER + B + C + [5, 6]
    plan = plan_reuse(cached, prompt, min_tokens=16)
    assert plan.prefix == len(HEADER)
    assert plan.moves == (Move(cache_start=len(HEADER) + 40, prompt_start=len(HEADER), length=80),)
    assert plan.moves[0].shift == -40
    assert plan.reused == len(HEADER) + 80
    # What the cache holds after the plan is exactly the prompt's start.
    assert prompt[: plan.reused] == HEADER + B + C


def test_several_deletions_give_several_moves_in_order():
    cached = HEADER + A + [1, 2] + B + [3] + C
    prompt = HEADER + A + B + C + TAIL
    plan = plan_reuse(cached, prompt, min_tokens=16)
    assert plan.prefix == len(HEADER) + 40
    assert [m.length for m in plan.moves] == [40, 40]
    assert [m.shift for m in plan.moves] == [-2, -3]
    assert plan.reused == len(HEADER) + 120
    starts = [m.prompt_start for m in plan.moves]
    assert starts == sorted(starts)


def test_short_runs_are_not_moved():
    cached = HEADER + A[:10] + [1] + B
    prompt = HEADER + B + TAIL
    assert plan_reuse(cached, prompt, min_tokens=41).moves == ()
    assert plan_reuse(cached, prompt, min_tokens=40).reused == len(HEADER) + 40


def test_inserted_text_stops_reuse_at_the_insertion():
    # A cell edited above: new tokens appear before cached ones. llama.cpp cannot
    # evaluate them in front of kept tokens, so the plan keeps only what precedes.
    cached = HEADER + A + B + C
    prompt = HEADER + A + [1, 2, 3] + B + C
    plan = plan_reuse(cached, prompt, min_tokens=16)
    assert plan.moves == ()
    assert plan.reused == len(HEADER) + 40


def test_the_last_tokens_are_left_for_generation():
    cached = HEADER + A + B
    prompt = HEADER + B
    plan = plan_reuse(cached, prompt, min_tokens=16, keep_last=1)
    assert plan.reused == len(prompt) - 1
    assert plan.moves[0].length == 39
    same = plan_reuse(prompt, prompt, min_tokens=16, keep_last=1)
    assert same.reused == len(prompt) - 1 and same.moves == ()


def test_empty_inputs():
    assert plan_reuse([], HEADER, min_tokens=16).reused == 0
    assert plan_reuse(HEADER, [], min_tokens=16).reused == 0
    assert plan_reuse(HEADER, [1], min_tokens=16).reused == 0
    assert common_prefix_len([], []) == 0
