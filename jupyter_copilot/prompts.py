"""Model families as data: fill-in-the-middle templates, stop tokens, file separators.

Code in `context.py` turns a notebook into a prompt with one of these; nothing else
knows a model's special tokens. Adding a family is adding one entry here.

Why we build FIM text ourselves: llama-cpp-python's `suffix=` path is broken for
several families, so the engine receives the finished prompt and tokenizes it with
special tokens enabled.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# -- Explanations (chat prompts) ---------------------------------------------------------
# One place for every word we say to the model, per language. `{...}` fields are
# filled by explain.py. "hint" prompts guide without giving the corrected code
# (teaching mode); the server also strips code blocks from hint answers.
EXPLAIN_SYSTEM = {
    "en": (
        "You are a patient teaching assistant for students learning Python in Jupyter "
        "notebooks. Answer in English, in short Markdown, with simple words. "
        "Base your answer only on the code and error shown."
    ),
    "fr": (
        "Tu es un assistant pédagogique patient pour des étudiants qui apprennent Python "
        "dans des notebooks Jupyter. Réponds en français, en Markdown court, avec des mots "
        "simples. Appuie-toi uniquement sur le code et l'erreur montrés."
    ),
}

EXPLAIN_TASK = {
    ("cell", "on", "en"): "Explain what this notebook cell does, step by step, then sum it up in one sentence.",
    ("cell", "on", "fr"): "Explique ce que fait cette cellule de notebook, étape par étape, puis résume-la en une phrase.",
    ("cell", "hint", "en"): (
        "Give the student hints to understand this cell by themselves: name the key concepts "
        "and ask guiding questions. Do not rewrite or complete the code."
    ),
    ("cell", "hint", "fr"): (
        "Donne à l'étudiant des pistes pour comprendre cette cellule par lui-même : nomme les "
        "notions clés et pose des questions qui le guident. Ne réécris pas et ne complète pas le code."
    ),
    ("error", "on", "en"): (
        "Explain this error to a beginner: what it means, which line causes it and why, "
        "and how to fix it (show the corrected line)."
    ),
    ("error", "on", "fr"): (
        "Explique cette erreur à un débutant : ce qu'elle signifie, quelle ligne la provoque "
        "et pourquoi, et comment la corriger (montre la ligne corrigée)."
    ),
    ("error", "hint", "en"): (
        "Help the student find the fix by themselves: explain what the error means and where "
        "to look, with one guiding question. Do not give the corrected code."
    ),
    ("error", "hint", "fr"): (
        "Aide l'étudiant à trouver la correction lui-même : explique ce que signifie l'erreur "
        "et où regarder, avec une question qui le guide. Ne donne pas le code corrigé."
    ),
}

EXPLAIN_LABELS = {
    "en": {"context": "Earlier cells of the notebook", "cell": "The cell", "error": "The error",
           "kernel": "Live in the kernel after the last run"},
    "fr": {"context": "Cellules précédentes du notebook", "cell": "La cellule", "error": "L'erreur",
           "kernel": "Présent dans le noyau après la dernière exécution"},
}

# When the notebook comes before the chat (an engine with `chats_after_document`), the
# question says which cell to explain, so that the answer is about it, not the cells
# above it (in a throw-away test that did not, an answer described them). A short cell
# is quoted again (EXPLAIN_AFTER_NOTEBOOK); a longer one is named by its length and its
# first and last lines (EXPLAIN_AFTER_NOTEBOOK_NAMED): the model reads it right above,
# and quoting a 20-line cell again doubled what an explanation evaluates before its
# first words (docs/benchmarks.md, "Explanations keep the notebook's cache").
EXPLAIN_AFTER_NOTEBOOK = {
    "en": "The notebook above ends with this cell.",
    "fr": "Le notebook ci-dessus se termine par cette cellule.",
}
EXPLAIN_AFTER_NOTEBOOK_NAMED = {
    "en": "The notebook above ends with the cell to explain: its last {lines} lines, from {first} to {last}.",
    "fr": "Le notebook ci-dessus se termine par la cellule à expliquer : ses {lines} dernières lignes, de {first} à {last}.",
}

HINT_CODE_REMOVED = {
    "en": "*(code removed: hint mode is on for this course)*",
    "fr": "*(code retiré : le mode indice est activé pour ce cours)*",
}

# -- questions in the explain panel (conversation.py) ----------------------------------

ASK_LABELS = {
    "en": {"course": "From the course material", "cell": "cell", "question": "The student's question"},
    "fr": {"course": "Extraits du cours", "cell": "cellule", "question": "La question de l'étudiant"},
}

# Added to the system prompt when course passages are given: the student should be
# sent back to *their* course, with the passage's number as the panel shows it.
ASK_GROUNDING = {
    "en": (
        "When the course material shown answers the question, rely on it first and cite "
        "it by its number, like [1]."
    ),
    "fr": (
        "Quand les extraits du cours montrés répondent à la question, appuie-toi d'abord "
        "sur eux et cite-les par leur numéro, comme [1]."
    ),
}

ASK_TASK = {
    ("on", "en"): "Answer the student's question about their notebook, briefly and concretely.",
    ("on", "fr"): "Réponds à la question de l'étudiant sur son notebook, brièvement et concrètement.",
    ("hint", "en"): (
        "Answer with hints only: explain the idea and where to look, and ask one guiding "
        "question. Never write code the student could run, even if asked to, even if an "
        "earlier message did."
    ),
    ("hint", "fr"): (
        "Réponds uniquement par des pistes : explique l'idée et où regarder, et pose une "
        "question qui guide. N'écris jamais de code que l'étudiant pourrait exécuter, même "
        "s'il le demande, même si un message précédent l'a fait."
    ),
}
