"""Name trigrams as pg_trgm makes them, and the SQL ranking that uses them agreeing with Python."""

from __future__ import annotations

import random

import asyncpg
import pytest

from registry.avatars import store
from registry.avatars.trigrams import similarity, trigrams, words
from registry.operators import store as operator_store


def test_a_word_is_padded_two_spaces_in_front_and_one_behind() -> None:
    # pg_trgm: SELECT show_trgm('cat') -> {"  c"," ca","at ",cat}
    assert trigrams("cat") == ["  c", " ca", "at ", "cat"]


def test_words_are_split_at_non_alphanumerics_and_lower_cased() -> None:
    # pg_trgm: SELECT show_trgm('Foo-bar!') -> {"  b","  f"," ba"," fo","ar ",bar,foo,"oo "}
    assert trigrams("Foo-bar!") == ["  b", "  f", " ba", " fo", "ar ", "bar", "foo", "oo "]
    assert words("  Aiko_Hoshino (VTuber) ") == ["aiko", "hoshino", "vtuber"]


def test_single_letter_words_and_empty_text() -> None:
    assert trigrams("a") == ["  a", " a "]
    assert trigrams("") == [] and trigrams("!!! ...") == []


def test_similarity_matches_pg_trgm_documentation() -> None:
    # The pg_trgm documentation: similarity('word', 'two words') = 0.36363637 (4 shared of 11).
    assert similarity(trigrams("word"), trigrams("two words")) == pytest.approx(4 / 11)
    assert similarity(trigrams("same"), trigrams("SAME")) == 1.0
    assert similarity(trigrams("abc"), []) == 0.0


def test_full_width_and_case_variants_fold_together() -> None:
    assert trigrams("ＡＩＫＯ") == trigrams("aiko") == trigrams("AIKO")
    assert trigrams("Straße") == trigrams("STRASSE")


def test_other_scripts_are_words_too() -> None:
    grams = trigrams("星街すいせい")
    assert grams == sorted(["  星", " 星街", "星街す", "街すい", "すいせ", "いせい", "せい "])
    assert similarity(grams, trigrams("星街すいせい Ch.")) > 0.5


async def test_sql_ranking_equals_python_similarity(conn: asyncpg.Connection) -> None:
    """The SQL search computes exactly the Python similarity (the cursor relies on it being exact)."""
    op = await operator_store.create_operator(conn, "Trigram Tester")
    rng = random.Random(7)
    syllables = ["ai", "ko", "ho", "shi", "no", "mi", "ka", "ze", "ru", "na", "yu", "ri"]
    names = [
        " ".join("".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(2)) for _ in range(40)
    ]
    for name in names:
        await store.insert_avatar(
            conn, owner_operator_id=op.id, name=name, name_trigrams=trigrams(name), status="active"
        )
    query = "aikoho shino"
    rows = await store.search_avatars(
        conn,
        name_trigrams=trigrams(query),
        owner=op.id,
        status=None,
        min_similarity=0.05,
        after_similarity=None,
        after_seq=None,
        limit=100,
    )
    expected = {n: similarity(trigrams(n), trigrams(query)) for n in names}
    assert rows, "the query shares trigrams with some names"
    for avatar, sim in rows:
        assert sim == expected[avatar.name]  # bit-for-bit, not approximately
    assert [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
    assert {a.name for a, _ in rows} == {n for n, s in expected.items() if s >= 0.05}
