"""The ctransformers backend of the engine's child process: legacy GGML models only.

ctransformers is unmaintained (last release 2023) and loads no current GGUF file; it
is installed only with ``pip install 'jupyter-copilot[legacy]'``. It keeps no prompt
cache we can control (every prompt is evaluated from scratch, warm-up is a no-op)
and brings no chat template (`llama_worker.plain_chat_prompt` is used). Same
protocol, same chunked and cancellable prefill as llama.cpp.
"""

from __future__ import annotations

import argparse
import codecs
from collections.abc import Callable, Iterator


class CTransformersBackend:
    name = "ctransformers"
    keeps_cache = False
    threads = None  # fixed by ctransformers at load

    def __init__(self, llm, context_length: int) -> None:
        self.llm = llm
        self._n_ctx = context_length
        self.last_prefill: dict = {}  # nothing reused, nothing to report

    @classmethod
    def load(cls, args: argparse.Namespace) -> CTransformersBackend:
        from ctransformers import AutoModelForCausalLM

        llm = AutoModelForCausalLM.from_pretrained(
            args.model, context_length=args.n_ctx, threads=args.threads or -1
        )
        return cls(llm, args.n_ctx)

    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text))

    def chat_prompt(self, messages: list[dict], continues: bool = False) -> None:
        return None  # no template: the worker's plain prompt

    def use_cache(self, lane: str, tokens=()) -> float:
        return 0.0  # one cache, reset by every prefill anyway

    def prefill(
        self, tokens: list[int], cancelled: Callable[[], bool], leave: int,
        progress: Callable[[int], None], chunk_tokens: int,
    ) -> tuple[int, bool]:
        self.llm.reset()
        self._pending = tokens[len(tokens) - max(leave, 1) :]
        end = len(tokens) - len(self._pending)
        for pos in range(0, end, chunk_tokens):
            if cancelled():
                return 0, False
            self.llm.eval(tokens[pos : min(pos + chunk_tokens, end)])
            progress(min(pos + chunk_tokens, end))
        return 0, True

    def generate(self, tokens: list[int], sampling: dict) -> Iterator[tuple[str, str | None]]:
        llm = self.llm
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = [s for s in sampling["stop"] if s]
        text = ""
        llm.eval(self._pending)
        for _ in range(sampling["max_tokens"]):
            token = llm.sample(
                top_k=sampling["top_k"],
                top_p=sampling["top_p"],
                temperature=max(sampling["temperature"], 1e-5),
                repetition_penalty=sampling["repeat_penalty"],
                seed=sampling["seed"] if sampling["seed"] is not None else -1,
            )
            if llm.is_eos_token(token):
                yield "", "stop"
                return
            piece = decoder.decode(llm.detokenize([token], decode=False))
            text += piece
            hit = min((text.find(s) for s in stops if s in text), default=-1)
            if hit != -1:
                yield piece[: max(len(piece) - (len(text) - hit), 0)], "stop"
                return
            yield piece, None
            llm.eval([token])
        yield "", "length"
