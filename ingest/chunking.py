"""Token-aware chunking: extracted sections become overlapping windows that fit the embedding model.

Windows are counted in the embedding model's own tokens, so a chunk never exceeds what the model
reads. Each window is cut from one section only, so its page and heading are exact. A chunk's text
is the original slice from its first token's start to its last token's end: no detokenisation.

Where a window must end early, the cut prefers, within the last ~20% of the window, a paragraph
break, then a sentence end, then any gap between words, and only then a hard cut (which can split a
word when a long run of text has no whitespace). The next window starts `overlap` tokens before
the cut, moved back to the start of its word when that is at most `overlap` tokens further (so the
overlap is exactly `overlap` tokens when the cut lands between words, as it does for plain text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from embeddings.base import Tokenizer
from ingest.formats import Section

_NO_BOUNDARY, _WORD, _SENTENCE, _PARAGRAPH = 0, 1, 2, 3
_SENTENCE_END = re.compile(r"[.!?][\"'\u2019\u201d)\]]*$")
_TAIL_FRACTION = 5  # look for a boundary in the last 1/5 of a window


@dataclass(frozen=True)
class Chunk:
    """A window of a section's text. `metadata` has `page` and `heading` when they are known."""

    index: int
    text: str
    token_count: int
    page: int | None
    metadata: dict[str, object]


def chunk_sections(
    sections: Sequence[Section],
    tokenizer: Tokenizer,
    max_tokens: int = 256,
    overlap: int = 32,
) -> list[Chunk]:
    """Split `sections` into windows of at most `max_tokens` tokens, `overlap` tokens shared between
    consecutive windows of one section. Whitespace-only sections are skipped; indexes run from 0
    across the whole document.
    """
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"need 0 <= overlap < max_tokens, got overlap={overlap}, max_tokens={max_tokens}")
    chunks: list[Chunk] = []
    for section in sections:
        if not section.text.strip():
            continue
        spans = tokenizer.token_spans(section.text)
        metadata: dict[str, object] = {}
        if section.page is not None:
            metadata["page"] = section.page
        if section.heading is not None:
            metadata["heading"] = section.heading
        for start, end in _windows(section.text, spans, max_tokens, overlap):
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=section.text[spans[start][0] : spans[end - 1][1]],
                    token_count=end - start,
                    page=section.page,
                    metadata=dict(metadata),
                )
            )
    return chunks


def _windows(text: str, spans: list[tuple[int, int]], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """`(start, end)` token index ranges (end exclusive) covering all of `spans`."""
    n = len(spans)
    windows: list[tuple[int, int]] = []
    start = 0
    while start < n:
        hard_end = min(start + max_tokens, n)
        if hard_end == n:
            windows.append((start, n))
            break
        end = _best_cut(text, spans, start, hard_end, max_tokens, overlap)
        windows.append((start, end))
        start = _next_start(text, spans, start, end - overlap, overlap)
    return windows


def _best_cut(text: str, spans: list[tuple[int, int]], start: int, hard_end: int, max_tokens: int, overlap: int) -> int:
    """The window end in the last ~20% of the window with the strongest boundary (latest on ties)."""
    lowest = max(start + overlap + 1, hard_end - max(1, max_tokens // _TAIL_FRACTION))
    best, best_rank = hard_end, _NO_BOUNDARY
    for i in range(hard_end, lowest - 1, -1):
        rank = _boundary_rank(text, spans, i)
        if rank > best_rank:
            best, best_rank = i, rank
            if rank == _PARAGRAPH:
                break
    return best


def _next_start(text: str, spans: list[tuple[int, int]], previous: int, candidate: int, overlap: int) -> int:
    """`candidate`, or the start of its word if that is within `overlap` tokens and after `previous`."""
    if overlap == 0 or _boundary_rank(text, spans, candidate) != _NO_BOUNDARY:
        return candidate
    for i in range(candidate - 1, max(previous, candidate - overlap - 1), -1):
        if _boundary_rank(text, spans, i) != _NO_BOUNDARY:
            return i
    return candidate


def _boundary_rank(text: str, spans: list[tuple[int, int]], i: int) -> int:
    """How good a cut between token `i - 1` and token `i` is (0 < i < len(spans))."""
    before_end, after_start = spans[i - 1][1], spans[i][0]
    gap = text[before_end:after_start]
    if not gap:
        return _NO_BOUNDARY
    if gap.count("\n") >= 2:
        return _PARAGRAPH
    if "\n" in gap or _SENTENCE_END.search(text[max(0, before_end - 4) : before_end]):
        return _SENTENCE
    return _WORD
