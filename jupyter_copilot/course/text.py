"""Words for the course index: the same normalisation for passages and questions.

Why a light stemmer of our own instead of SQLite's `porter` tokenizer: courses and
questions are in French *and* English (often a French question on an English
notebook), and `porter` knows English only. Both sides go through `terms()`, so the
stems only need to be consistent, not linguistically exact: accents are removed,
code identifiers are split (`df.groupby` -> df groupby, `fillNa` -> fill na), and
the common French and English inflections are cut (tableaux -> tableau,
arrays -> array, triées -> tri). A small bilingual glossary of teaching terms
(glossary.py) then lets a French question find an English passage and back.
"""

from __future__ import annotations

import re
import unicodedata

from .glossary import GLOSSARY

WORD = re.compile(r"[A-Za-z0-9]+")
CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")

# Longest first; a suffix is cut only if at least MIN_STEM letters remain.
SUFFIXES = sorted(
    {
        # French
        "issements", "issement", "ements", "ement", "ations", "ation", "atrices", "atrice",
        "ateurs", "ateur", "ences", "ence", "ances", "ance", "ables", "able", "iques", "ique",
        "ismes", "isme", "istes", "iste", "euses", "euse", "eurs", "eur", "ees", "ee", "es",
        "er", "ez", "e", "s", "x",
        # English
        "ingly", "edly", "ations", "ation", "ments", "ment", "ings", "ing", "ness", "ies",
        "ied", "ers", "ed", "ly",
    },
    key=len,
    reverse=True,
)
MIN_STEM = 3

STOPWORDS = frozenset(
    """
    a an and are as at be by can could do does did for from has have how i if in into is it
    its me my of on or so that the their them then there these this those to was we were
    what when where which who why will with would you your yours not no yes also just than
    use used using get make work want need please explain mean means does
    le la les l un une des du de d au aux et ou est sont a ai as avec pour par sur dans en
    ce cet cette ces qui que quoi qu quel quelle quels quelles comment pourquoi quand ou
    je tu il elle on nous vous ils elles me te se mon ma mes ton ta tes son sa ses notre
    votre leur leurs ne pas plus moins tres bien fait faire faut peut peux veut utiliser
    utilise quoi y est-ce c s n j m t entre comme mais donc alors si sans sous
    """.split()
)


def fold(text: str) -> str:
    """Lowercase, without accents (é -> e, ç -> c)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def stem(word: str) -> str:
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM:
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    """Folded words of `text`, identifiers split at dots, underscores and camelCase."""
    out = []
    for raw in WORD.findall(unicodedata.normalize("NFKD", text)):
        for part in CAMEL.split(raw):
            folded = fold(part)
            if len(folded) >= 2 and not folded.isdigit():
                out.append(folded)
    return out


def terms(text: str) -> list[str]:
    """The index terms of `text` (stop words dropped, stems), in order."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def _stemmed_glossary() -> dict[tuple[str, ...], frozenset[str]]:
    """(stems of one side) -> stems of the other side, both ways. A phrase translates
    only as a whole ("tableau croisé" -> pivot table), so that its words alone do not
    drag in the phrase's meaning (a "tableau" is an array, not a pivot table)."""
    table: dict[tuple[str, ...], set[str]] = {}
    for french, english in GLOSSARY:
        fr, en = tuple(terms(french)), tuple(terms(english))
        if fr and en:
            table.setdefault(fr, set()).update(en)
            table.setdefault(en, set()).update(fr)
    return {key: frozenset(set(values) - set(key)) for key, values in table.items()}


TRANSLATIONS = _stemmed_glossary()
LONGEST_PHRASE = max(len(key) for key in TRANSLATIONS)


def query_terms(text: str, limit: int = 48) -> list[str]:
    """The terms to look up for a question: its own (first) and their translations."""
    stems = terms(text)
    own = list(dict.fromkeys(stems))
    extra: list[str] = []
    for start in range(len(stems)):
        for size in range(1, LONGEST_PHRASE + 1):
            key = tuple(stems[start : start + size])
            if len(key) == size:
                extra.extend(sorted(TRANSLATIONS.get(key, ())))
    return list(dict.fromkeys(own + [t for t in extra if t not in own]))[:limit]
