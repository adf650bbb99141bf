"""Course material: passages, the incremental index, French/English retrieval, citations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jupyter_copilot.course.chunking import html_passages, markdown_passages, notebook_passages
from jupyter_copilot.course.index import CourseIndex
from jupyter_copilot.course.retrieval import CourseLibrary, within_budget
from jupyter_copilot.course.text import fold, query_terms, terms
from jupyter_copilot.schema import ErrorInfo, ExplainRequest


def notebook(*cells: tuple[str, str]) -> dict:
    return {
        "cells": [{"cell_type": kind, "source": source, "metadata": {}} for kind, source in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }


def write_nb(path: Path, *cells: tuple[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook(*cells)), encoding="utf-8")
    return path


@pytest.fixture
def course(tmp_path) -> Path:
    """A small course: French and English notebooks, a Markdown page, an HTML page."""
    root = tmp_path / "cours-python"
    write_nb(
        root / "01-listes.ipynb",
        ("markdown", "# Les listes\nUne liste contient des valeurs."),
        ("code", "fruits = ['pomme', 'poire']"),
        ("markdown", "## Longueur d'une liste\nLa fonction `len` donne le nombre d'éléments "
                     "d'une liste ; une liste n'a pas d'attribut `size`."),
        ("code", "len(fruits)"),
        ("markdown", "## Trier une liste\nLa méthode `sort` trie la liste sur place."),
        ("code", "fruits.sort()"),
    )
    write_nb(
        root / "02-dictionaries.ipynb",
        ("markdown", "# Dictionaries\nA dictionary maps keys to values."),
        ("code", "ages = {'alice': 20}"),
        ("markdown", "## Missing keys\nReading a key that is not there raises `KeyError`; "
                     "use `dict.get` to give a default value."),
        ("code", "ages.get('bob', 0)"),
    )
    write_nb(
        root / "03-numpy.ipynb",
        ("markdown", "# Tableaux NumPy"),
        ("markdown", "## Forme d'un tableau\nL'attribut `shape` donne les dimensions; "
                     "`reshape` change la forme."),
        ("code", "import numpy as np\nx = np.arange(6).reshape(2, 3)"),
    )
    (root / "notes").mkdir()
    (root / "notes" / "boucles.md").write_text(
        "# Les boucles\n\nIntro.\n\n## La boucle for\n\n`for x in range(3):` répète un bloc.\n",
        encoding="utf-8",
    )
    (root / "syllabus.html").write_text(
        "<html><head><title>x</title><script>var hidden = 1;</script></head><body>"
        "<h1>Syllabus</h1><p>Exams are in June.</p><h2>Grading</h2><p>Two projects.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    write_nb(root / ".ipynb_checkpoints" / "01-listes-checkpoint.ipynb", ("markdown", "# old"))
    return root


# -- words -----------------------------------------------------------------------------------

def test_words_are_folded_stemmed_and_identifiers_split():
    assert fold("Égalité Ça") == "egalite ca"
    assert terms("Les tableaux triés") == terms("le tableau trie")
    assert "groupby" in terms("df.groupby('key')") and "key" in terms("df.groupby('key')")
    assert terms("fillNa") == ["fill", "na"]
    assert terms("arrays") == terms("array")


def test_a_french_question_also_looks_for_the_english_words():
    wanted = query_terms("Comment trier un tableau ?")
    assert set(terms("sort array")) <= set(wanted)
    # a phrase translates as a whole only: a "tableau" alone is not a pivot table
    assert terms("pivot")[0] not in wanted
    assert terms("pivot")[0] in query_terms("un tableau croisé dynamique")
    assert set(terms("liste")) <= set(query_terms("how long is my list"))


# -- passages --------------------------------------------------------------------------------

def test_notebook_passages_start_at_headings_and_keep_their_cell():
    passages = notebook_passages(
        notebook(("markdown", "# Title"), ("code", "a = 1"), ("markdown", "## Part\ntext"),
                 ("code", "b = 2")),
        "fallback",
    )
    assert [(p.title, p.cell_index) for p in passages] == [("Title", 0), ("Title › Part", 2)]
    assert "b = 2" in passages[1].text and "a = 1" in passages[0].text


def test_long_sections_are_cut_and_cite_the_cell_where_each_part_starts():
    cells = [("markdown", "# T")] + [("code", f"x{i} = '{'a' * 500}'") for i in range(8)]
    passages = notebook_passages(notebook(*cells), "t")
    assert len(passages) > 2
    assert all(len(p.text) < 2500 for p in passages)
    assert passages[1].cell_index > passages[0].cell_index


def test_markdown_and_html_are_cut_at_headings_without_scripts():
    md = markdown_passages("# A\n\nintro\n\n## B\n\nbody", "f")
    assert [p.title for p in md] == ["A", "A › B"]
    html = html_passages("<script>secret()</script><h1>S</h1><p>one</p><h2>G</h2><p>two</p>", "f")
    assert [p.title for p in html] == ["S", "S › G"]
    assert all("secret" not in p.text for p in html)


# -- the index --------------------------------------------------------------------------------

def test_citations_point_at_the_right_notebook_and_cell(course):
    index = CourseIndex([course])
    report = index.sync()
    assert report.files == 5  # the checkpoint folder is not course material
    hits = index.search("pourquoi len et pas size pour une liste ?")
    assert hits[0].path == "cours-python/01-listes.ipynb"
    assert hits[0].cell_index == 2  # the "Longueur d'une liste" section
    hits = index.search("KeyError when I read a missing key in a dict")
    assert hits[0].path == "cours-python/02-dictionaries.ipynb" and hits[0].cell_index == 2
    # English question, French notebook
    hits = index.search("how do I change the shape of an array?")
    assert hits[0].path == "cours-python/03-numpy.ipynb" and hits[0].cell_index == 1
    assert index.search("boucle for")[0].path == "cours-python/notes/boucles.md"
    assert index.search("when are the exams?")[0].path == "cours-python/syllabus.html"


def test_one_source_per_file_so_three_sources_name_three_files(course):
    index = CourseIndex([course])
    index.sync()
    hits = index.search("liste trier longueur dictionnaire tableau", limit=3)
    assert len({h.path for h in hits}) == len(hits) == 3


def test_the_index_follows_changed_added_and_removed_files_only(course, tmp_path):
    db = tmp_path / "index.sqlite"
    index = CourseIndex([course], db)
    assert index.sync().indexed == 5
    assert index.sync().indexed == 0  # nothing changed: nothing re-read
    path = course / "02-dictionaries.ipynb"
    write_nb(path, ("markdown", "# Dictionaries\n## Sets\nA set keeps unique values: frozenset."))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    write_nb(course / "04-strings.ipynb", ("markdown", "# Strings\nUse `str.upper` for capitals."))
    (course / "syllabus.html").unlink()
    report = index.sync()
    assert (report.indexed, report.removed) == (2, 1)
    assert index.search("frozenset")[0].path == "cours-python/02-dictionaries.ipynb"
    assert not index.search("dict.get default")  # the old text is gone
    assert index.search("upper capitals")[0].path == "cours-python/04-strings.ipynb"
    assert not [h for h in index.search("exams June grading") if h.path.endswith(".html")]
    index.close()
    # kept across restarts: a new index on the same file re-reads nothing
    again = CourseIndex([course], db)
    assert again.sync().indexed == 0
    assert again.search("frozenset")


def test_maybe_sync_rechecks_only_after_the_interval(course):
    now = [0.0]
    index = CourseIndex([course], check_interval=30, clock=lambda: now[0])
    index.maybe_sync()
    write_nb(course / "05-new.ipynb", ("markdown", "# Recursion\nA function calling itself."))
    index.maybe_sync()
    assert not index.search("recursion")
    now[0] = 31
    index.maybe_sync()
    assert index.search("recursion")[0].path.endswith("05-new.ipynb")


def test_a_broken_notebook_is_skipped_not_fatal(course):
    (course / "broken.ipynb").write_text("{not json", encoding="utf-8")
    index = CourseIndex([course])
    assert index.sync().files == 6
    assert index.search("listes")


# -- the library: groups, budget, citations -----------------------------------------------------

def test_each_group_gets_its_own_course_and_paths_for_the_student(course, tmp_path):
    other = tmp_path / "other-course"
    write_nb(other / "x.ipynb", ("markdown", "# Regex\nRegular expressions with re.match."))
    groups = {"alice": ["l1"], "bob": ["l2"], "carol": []}
    library = CourseLibrary({"l1": [str(course)], "*": [str(other)]}, ":memory:",
                            lambda user: groups[user], student_prefix="shared")
    req = ExplainRequest(kind="question", question="regular expressions re.match")
    assert library.ground_sync(req, "bob").sources[0].path == "shared/other-course/x.ipynb"
    req = ExplainRequest(kind="error", source="ages['bob']",
                         error=ErrorInfo(ename="KeyError", evalue="'bob'"))
    found = library.ground_sync(req, "alice")
    assert found.sources[0].path == "shared/cours-python/02-dictionaries.ipynb"
    assert found.sources[0].cell_index == 2 and found.sources[0].excerpt
    assert library.ground_sync(ExplainRequest(kind="question", question="zzzz qqqq"), "carol") is None


def test_passages_fit_the_token_budget(course):
    library = CourseLibrary({"*": [str(course)]}, ":memory:", budget_tokens=70)
    found = library.ground_sync(ExplainRequest(kind="question", question="liste len size sort"), "u")
    assert sum(len(h.text) for h in found.hits) <= 70 * 4
    assert within_budget(found.hits, 10) == []


def test_a_100_notebook_course_indexes_and_answers(tmp_path):
    """Not a timing test (the benchmark prints the times): the index of a course of 100
    notebooks is built, and a question finds its notebook among them."""
    for n in range(100):
        write_nb(tmp_path / "c" / f"{n:03d}.ipynb", ("markdown", f"# Chapter {n}\nTopic{n} words."),
                 ("code", f"value_{n} = {n}"))
    index = CourseIndex([tmp_path / "c"])
    assert index.sync().files == 100
    assert index.search("topic57")[0].path == "c/057.ipynb"
