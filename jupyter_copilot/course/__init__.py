"""Course material: staff's notebooks, Markdown, HTML and PDF, indexed for citations.

- `chunking`: files -> passages (a section of a notebook, a page of a PDF);
- `text`: the words of passages and questions (French and English);
- `index`: SQLite FTS5 + BM25, synced incrementally;
- `retrieval`: passages for one request within a token budget, and their citations.
"""

from .index import CourseIndex, Hit, SyncReport

__all__ = ["CourseIndex", "Hit", "SyncReport"]
