"""The llama.cpp backend of the engine's child process (llama-cpp-python).

Runs only inside `llama_worker.py`; the Jupyter server never imports llama_cpp.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from collections.abc import Callable, Iterator, Sequence

from .avoid_mask import AvoidMask
from .cpu_share import usable_cores
from .kv_reuse import ReusePlan, common_prefix_len, plan_reuse
from .token_healing import HealingMask, Vocabulary

# The KV cache is sequence 0 of the context; llama-cpp-python's Llama uses no other.
_SEQ = 0

# Lanes whose caches start alike: a chat written after the notebook document (lane
# "conversation") starts with what the completions cached, and a completion after it
# finds the notebook in the conversation's cache. A job of one of them goes on from
# whichever of their caches (the live one, or one parked) holds the longest prefix
# of its prompt; a cache it leaves stays parked for its own lane.
_SHARING = {("complete", "conversation"), ("conversation", "complete")}


class LlamaBackend:
    name = "llama_cpp"
    keeps_cache = True

    def __init__(self, llm, cache_reuse_tokens: int = 0, threads: int = 1) -> None:
        self.llm = llm
        self.threads = threads  # what the context evaluates with now (set_threads)
        self._chat_formatter = None
        # Runs of at least this many cached tokens are moved rather than evaluated
        # again (kv_reuse.py); 0: only the common prefix is reused. Needs a model whose
        # positions can be shifted (RoPE), which llama.cpp says.
        self.cache_reuse_tokens = cache_reuse_tokens if self._can_shift() else 0
        # Completions, conversations after the notebook and chats of their own keep
        # separate caches: those not in use are parked in memory here (their tokens
        # and KV state) and restored when their lane comes back, so an explanation
        # never evicts the notebook's context, nor a completion the conversation.
        self._lane = "complete"
        self._parked: dict[str, tuple[list[int], ctypes.Array]] = {}
        self.last_prefill: dict = {}
        self._vocab: Vocabulary | None = None

    @classmethod
    def load(cls, args: argparse.Namespace) -> LlamaBackend:
        from llama_cpp import Llama

        # llama-cpp-python defaults to half the cores for generation; the Jupyter server
        # is mostly idle while a student waits, so use all this process may run on
        # unless told otherwise (cpu_share.py gives some back while others are busy).
        threads = args.threads or usable_cores()
        return cls(
            Llama(
                model_path=args.model,
                n_ctx=args.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=args.n_batch,
                seed=0,
                verbose=args.verbose,
            ),
            cache_reuse_tokens=args.cache_reuse,
            threads=threads,
        )

    def set_threads(self, threads: int) -> None:
        """Evaluate with `threads` from the next evaluation on (never during one)."""
        if threads != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llm._ctx.ctx, threads, threads)
            self.threads = threads

    def _vocabulary(self) -> Vocabulary:
        """Every token's bytes, read once (~150k tokens: well under a second)."""
        if self._vocab is None:
            llm = self.llm
            self._vocab = Vocabulary(
                [llm.detokenize([token], special=False) for token in range(llm.n_vocab())]
            )
        return self._vocab

    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    def tokenize(self, text: str) -> list[int]:
        # special=True: the FIM markers in our prompt are control tokens, not text.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def chat_prompt(
        self, messages: list[dict], continues: bool = False
    ) -> tuple[list[int], list[str]] | None:
        """The model's own chat template (from the GGUF), rendered here so that the
        chat prompt goes through the same chunked, cancellable prefill as a completion.
        None when the model brings no template."""
        formatter = self._formatter()
        if formatter is None:
            return None
        result = formatter(messages=messages)
        tokens = self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not (result.added_special or continues),
            special=True,
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

    def _can_shift(self) -> bool:
        import llama_cpp

        memory = self.llm._ctx.memory
        return memory is not None and bool(llama_cpp.llama_memory_can_shift(memory))

    def use_cache(self, lane: str, tokens: Sequence[int] = ()) -> float:
        """Make `lane`'s cache the live one for a prompt of `tokens`; seconds spent
        parking and restoring. A job goes on from the cache, among its lane's and its
        sharing lanes' (`_SHARING`), live or parked, that holds the longest prefix of
        `tokens` (the live one when tied: nothing to copy)."""
        sources = {lane} | {other for other, to in _SHARING if to == lane}
        parked = [name for name in sorted(sources) if name in self._parked]
        if lane == self._lane and not parked:
            return 0.0  # the hot path: a completion after a completion
        import llama_cpp

        started = time.perf_counter()
        llm = self.llm

        reach = {name: common_prefix_len(self._parked[name][0], tokens) for name in parked}
        best = max(reach, key=reach.__getitem__, default=None)
        if self._lane in sources:
            live = common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), tokens)
            if best is None or live >= reach[best]:  # go on from the live cache
                if self._lane != lane:
                    self._park()  # its lane keeps a copy
                self._lane = lane
                return time.perf_counter() - started
        # The lane's own parked cache moves back; a sharing lane's is copied (kept);
        # none: start cold.
        chosen = (self._parked.pop(best) if best == lane else self._parked[best]) if best else None
        self._park()
        llama_cpp.llama_memory_seq_rm(llm._ctx.memory, _SEQ, -1, -1)
        llm.n_tokens = 0
        if chosen is not None:
            self._restore(*chosen)
        self._lane = lane
        return time.perf_counter() - started

    def _park(self) -> None:
        """Keep a copy of the live cache (tokens and KV state) for its lane."""
        import llama_cpp

        llm, ctx = self.llm, self.llm._ctx.ctx
        if not llm.n_tokens:
            return
        size = llama_cpp.llama_state_seq_get_size(ctx, _SEQ)
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(ctx, state, size, _SEQ):
            self._parked[self._lane] = (llm.input_ids[: llm.n_tokens].tolist(), state)

    def _restore(self, tokens: list[int], state: ctypes.Array) -> None:
        """Load a parked cache into the (just emptied) live one."""
        import llama_cpp

        llm = self.llm
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, state, len(state), _SEQ):
            llm.input_ids[: len(tokens)] = tokens
            llm.n_tokens = len(tokens)
        else:  # no room (should not happen: the cache was just emptied): start cold
            llama_cpp.llama_memory_seq_rm(llm._ctx.memory, _SEQ, -1, -1)

    def prefill(
        self, tokens: list[int], cancelled: Callable[[], bool], leave: int,
        progress: Callable[[int], None], chunk_tokens: int,
    ) -> tuple[int, bool]:
        """Evaluate `tokens` into the KV cache, reusing what is already there (the
        common prefix, and runs of cached tokens that moved: `kv_reuse.py`), in chunks
        so that a cancellation stops it soon. The last `leave` tokens (at least one)
        are left for the generation call, which evaluates them in one batch with the
        token it samples after."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        # Keep the last token out at least: generation re-evaluates it for fresh logits.
        plan = plan_reuse(cached, tokens, min_tokens=self.cache_reuse_tokens, keep_last=1)
        self._apply(plan, cached)
        reuse = plan.reused
        self.last_prefill = {"moved_tokens": plan.moved}
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

    def _apply(self, plan: ReusePlan, cached: list[int]) -> None:
        """Make the KV cache hold the plan's tokens at their new positions."""
        llm = self.llm
        if plan.moves:
            import llama_cpp

            memory = llm._ctx.memory
            for move in plan.moves:
                # Drop the stale cached tokens between the last kept one and this run,
                # then slide the run left over them (llama.cpp re-rotates the keys).
                llama_cpp.llama_memory_seq_rm(memory, _SEQ, move.prompt_start, move.cache_start)
                end = move.cache_start + move.length
                llama_cpp.llama_memory_seq_add(memory, _SEQ, move.cache_start, end, move.shift)
                llm.input_ids[move.prompt_start : move.prompt_start + move.length] = cached[
                    move.cache_start : end
                ]
            llama_cpp.llama_memory_seq_rm(memory, _SEQ, plan.reused, -1)
        llm.n_tokens = plan.reused

    def generate(self, tokens: list[int], sampling: dict) -> Iterator[tuple[str, str | None]]:
        options = dict(sampling, stop=sampling["stop"] or None)
        heal, avoid = options.pop("heal", ""), options.pop("avoid", None)
        avoid_starts = options.pop("avoid_starts", [])
        masks = []
        if heal:
            masks.append(HealingMask(self._vocabulary(), heal))
        if avoid is not None:
            masks.append(AvoidMask(self._vocabulary(), avoid, avoid_starts))
        if masks:
            options["logits_processor"] = masks
        for chunk in self.llm.create_completion(tokens, stream=True, **options):
            choice = chunk["choices"][0]
            yield choice.get("text") or "", choice.get("finish_reason")
