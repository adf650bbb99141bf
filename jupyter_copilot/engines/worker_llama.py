"""The llama.cpp backend of the engine's child process (llama-cpp-python).

Runs only inside `llama_worker.py`; the Jupyter server never imports llama_cpp.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator


def _common_prefix_len(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaBackend:
    name = "llama_cpp"
    keeps_cache = True

    def __init__(self, llm) -> None:
        self.llm = llm
        self._chat_formatter = None

    @classmethod
    def load(cls, args: argparse.Namespace) -> LlamaBackend:
        from llama_cpp import Llama

        # llama-cpp-python defaults to half the cores for generation; the Jupyter server
        # is mostly idle while a student waits, so use them all unless told otherwise.
        threads = args.threads or os.cpu_count() or 1
        return cls(
            Llama(
                model_path=args.model,
                n_ctx=args.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=args.n_batch,
                seed=0,
                verbose=args.verbose,
            )
        )

    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    def tokenize(self, text: str) -> list[int]:
        # special=True: the FIM markers in our prompt are control tokens, not text.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def chat_prompt(self, messages: list[dict]) -> tuple[list[int], list[str]] | None:
        """The model's own chat template (from the GGUF), rendered here so that the
        chat prompt goes through the same chunked, cancellable prefill as a completion.
        None when the model brings no template."""
        formatter = self._formatter()
        if formatter is None:
            return None
        result = formatter(messages=messages)
        tokens = self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, [s for s in stop if s]

    def _formatter(self):
        if self._chat_formatter is None:
            template = self.llm.metadata.get("tokenizer.chat_template")
            if not template:
                return None
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text_of(token: int) -> str:
                return self.llm._model.token_get_text(token) if token != -1 else ""

            self._chat_formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=text_of(self.llm.token_eos()),
                bos_token=text_of(self.llm.token_bos()),
                stop_token_ids=[self.llm.token_eos()],
            )
        return self._chat_formatter

    def prefill(
        self, tokens: list[int], cancelled: Callable[[], bool], leave: int,
        progress: Callable[[int], None], chunk_tokens: int,
    ) -> tuple[int, bool]:
        """Evaluate `tokens` into the KV cache, reusing the longest common prefix with
        what is already there, in chunks so that a cancellation stops it soon. The
        last `leave` tokens (at least one) are left for the generation call, which
        evaluates them in one batch with the token it samples after."""
        llm = self.llm
        cached_ids = llm.input_ids[: llm.n_tokens].tolist()
        # Keep the last token out at least: generation re-evaluates it for fresh logits.
        reuse = min(_common_prefix_len(cached_ids, tokens), max(len(tokens) - 1, 0))
        llm.n_tokens = reuse
        pos = reuse
        end = len(tokens) - min(max(leave, 1), len(tokens) - reuse)
        while pos < end:
            if cancelled():
                return reuse, False
            chunk = tokens[pos : min(pos + chunk_tokens, end)]
            llm.eval(chunk)
            pos += len(chunk)
            progress(pos)
        return reuse, True

    def generate(self, tokens: list[int], sampling: dict) -> Iterator[tuple[str, str | None]]:
        options = dict(sampling, stop=sampling["stop"] or None)
        for chunk in self.llm.create_completion(tokens, stream=True, **options):
            choice = chunk["choices"][0]
            yield choice.get("text") or "", choice.get("finish_reason")
