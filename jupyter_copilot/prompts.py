"""Model families as data: fill-in-the-middle templates, stop tokens, file separators.

Code in `context.py` turns a notebook into a prompt with one of these; nothing else
knows a model's special tokens. Adding a family is adding one entry here.

Why we build FIM text ourselves: llama-cpp-python's `suffix=` path is broken for
several families, so the engine receives the finished prompt and tokenizes it with
special tokens enabled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class FimFamily:
    name: str
    # Format strings with {prefix} and {suffix}. Prefix-Suffix-Middle order for all
    # families here; the stable part (repo header + earlier files) goes before it.
    fim: Optional[str]
    # How earlier files/cells are introduced ("repo-level" prompts). {name} and
    # {path}/{content} are filled in. None: earlier cells are put in the prefix.
    repo_header: Optional[str] = None
    file_header: Optional[str] = None
    # Tokens that end a completion; the post-processing pipeline cuts at any of them.
    stop: tuple[str, ...] = ()
    # Text the model writes as a comment line, for markdown cells given as context.
    comment: str = "# "
    notes: str = ""


FAMILIES: dict[str, FimFamily] = {
    # Qwen2.5-Coder: official repo-level FIM format (Qwen2.5-Coder tech report, §3).
    "qwen2.5-coder": FimFamily(
        name="qwen2.5-coder",
        fim="<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
        repo_header="<|repo_name|>{name}\n",
        file_header="<|file_sep|>{path}\n",
        stop=(
            "<|endoftext|>",
            "<|fim_prefix|>",
            "<|fim_suffix|>",
            "<|fim_middle|>",
            "<|fim_pad|>",
            "<|repo_name|>",
            "<|file_sep|>",
            "<|im_start|>",
            "<|im_end|>",
        ),
    ),
    "starcoder2": FimFamily(
        name="starcoder2",
        fim="<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
        repo_header="<repo_name>{name}\n",
        file_header="<file_sep>{path}\n",
        stop=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>"),
    ),
    "deepseek-coder": FimFamily(
        name="deepseek-coder",
        fim="<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
        file_header="# {path}\n",
        stop=("<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<|EOT|>"),
    ),
    "codellama": FimFamily(
        name="codellama",
        # CodeLlama's tokenizer wants a space before the suffix and before <MID>.
        fim="<PRE> {prefix} <SUF>{suffix} <MID>",
        file_header="# {path}\n",
        stop=("<EOT>", "</s>", "<PRE>", "<SUF>", "<MID>"),
    ),
    # Models without FIM training (e.g. SmolLM2, used by the test-suite): plain
    # left-to-right completion of the prefix; the suffix is not shown to the model.
    "plain": FimFamily(
        name="plain",
        fim=None,
        file_header="# {path}\n",
        stop=("<|endoftext|>", "<|im_end|>", "<|im_start|>", "</s>"),
    ),
}


def family(name: str) -> FimFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None
