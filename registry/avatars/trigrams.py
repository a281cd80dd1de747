"""Trigrams of avatar names for fuzzy search, the way PostgreSQL's ``pg_trgm`` makes them (pure).

The embedded PostgreSQL has no ``pg_trgm``, so names are split into trigrams here and stored in a ``text[]``
column with an array GIN index; SQL finds candidates with ``&&`` (shares a trigram) and ranks them by the
same similarity ``pg_trgm``'s ``similarity()`` computes. The rules follow ``contrib/pg_trgm/trgm_op.c``
(``generate_trgm``):

- words are runs of alphanumeric characters (any script: ``str.isalnum``); everything else separates words;
- each word is lower-cased (here: NFKC then ``casefold``, so full-width ``ＡＢＣ`` and ``abc`` agree) and
  padded with two spaces in front and one behind (``LPADDING = 2``, ``RPADDING = 1``);
- the trigrams are the word's 3-character windows, and a name's trigram set is the union over its words;
- ``similarity(a, b) = |A ∩ B| / |A ∪ B|`` (``cnt_sml`` without ``DIVUNION`` off), 0 when either is empty.

``pg_trgm`` hashes a trigram of multibyte characters to 3 bytes; we keep the characters themselves, which
only avoids its (rare) collisions.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection

__all__ = ["DEFAULT_MIN_SIMILARITY", "similarity", "trigrams", "words"]

# pg_trgm's default ``pg_trgm.similarity_threshold`` (the ``%`` operator).
DEFAULT_MIN_SIMILARITY = 0.3
_LPAD = "  "
_RPAD = " "


def words(text: str) -> list[str]:
    """The normalised words of ``text``: NFKC, case-folded, split at every non-alphanumeric character."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    current: list[str] = []
    for ch in folded:
        if ch.isalnum():
            current.append(ch)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return out


def trigrams(text: str) -> list[str]:
    """The sorted, distinct trigrams of ``text`` (pg_trgm's ``show_trgm``, before its hashing).

    ``trigrams("Cat")`` is ``['  c', ' ca', 'at ', 'cat']``; a text without alphanumerics has none.
    """
    found: set[str] = set()
    for word in words(text):
        padded = _LPAD + word + _RPAD
        found.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return sorted(found)


def similarity(a: Collection[str], b: Collection[str]) -> float:
    """pg_trgm's similarity of two trigram sets: shared trigrams over all distinct trigrams (0.0 to 1.0)."""
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    shared = len(sa & sb)
    return shared / (len(sa) + len(sb) - shared)
