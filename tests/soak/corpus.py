"""Documents for the soak: small clinical-looking notes in which every sentence names its tenant.

Each tenant has a marker word (`mk` and 8 hex digits). Every sentence starts with it and is short
(about 18 model tokens), so every chunk the pipeline can cut (at least `overlap + 1` = 33 tokens)
holds the whole marker at least once: a search hit can always be attributed to its tenant.
"""

from __future__ import annotations

import io
import random
import re
import secrets
from dataclasses import dataclass
from typing import Literal

import docx

from tests.sample_files import make_blank_pdf, make_pdf

MARKER = re.compile(r"\bmk[0-9a-f]{8}\b")
"""Any tenant's marker, wherever it appears in an answer."""

Kind = Literal["txt", "md", "pdf", "docx", "blank-pdf"]
KINDS: tuple[Kind, ...] = ("txt", "md", "pdf", "docx")
KIND_WEIGHTS = (60, 15, 15, 10)
NO_TEXT = "no_text"
"""The reason a blank PDF fails with: the one document per tenant that is meant to end `failed`."""

TOPICS = (
    "hypertension", "type 2 diabetes", "asthma", "chronic kidney disease", "heart failure", "pneumonia",
    "atrial fibrillation", "migraine", "osteoarthritis", "hypothyroidism", "sepsis", "depression",
)  # fmt: skip
SENTENCES = (
    "reports {t} symptoms for several weeks.",
    "has examination findings consistent with {t}.",
    "reviewed the management of {t} with family.",
    "discussed laboratory results in the context of {t}.",
    "returns to clinic for {t} follow-up.",
    "had {t} medication adjusted today.",
)
QUESTIONS = (
    "shortness of breath and wheezing at night",
    "blood sugar control with metformin",
    "medicine for high blood pressure",
    "declining kidney function and dialysis",
    "irregular heartbeat and anticoagulation",
    "fever with productive cough",
    "one sided headache with nausea",
    "joint pain on walking",
    "fatigue and weight gain with low thyroid",
    "low mood and loss of interest",
)


def new_marker() -> str:
    return "mk" + secrets.token_hex(4)


@dataclass(frozen=True)
class SoakDocument:
    filename: str
    content: bytes
    kind: Kind

    @property
    def expect_failure(self) -> bool:
        return self.kind == "blank-pdf"


def _sentence(rng: random.Random, marker: str) -> str:
    return f"{marker} " + rng.choice(SENTENCES).format(t=rng.choice(TOPICS))


def _paragraphs(rng: random.Random, marker: str, number: int, size: int) -> list[str]:
    """About `size` characters; the first paragraph makes the content unique within its tenant."""
    paragraphs = [f"{marker} visit note {number} reference {rng.getrandbits(32):08x}."]
    while sum(len(p) + 2 for p in paragraphs) < size:
        paragraphs.append(" ".join(_sentence(rng, marker) for _ in range(rng.randint(2, 5))))
    return paragraphs


def _docx(title: str, paragraphs: list[str]) -> bytes:
    document = docx.Document()
    document.add_heading(title, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_document(rng: random.Random, marker: str, number: int, kind: Kind) -> SoakDocument:
    """Document `number` of the tenant with `marker`, a few hundred bytes to a few KiB of text."""
    name = f"{marker}-{number:03d}"
    if kind == "blank-pdf":
        return SoakDocument(f"{name}.pdf", make_blank_pdf(), kind)
    if kind == "pdf":
        pages = [f"{marker} visit note {number} reference {rng.getrandbits(32):08x}."]
        pages += [_sentence(rng, marker) for _ in range(rng.randint(1, 5))]
        return SoakDocument(f"{name}.pdf", make_pdf(pages), kind)
    paragraphs = _paragraphs(rng, marker, number, rng.randint(300, 3000))
    if kind == "docx":
        return SoakDocument(f"{name}.docx", _docx(f"{marker} visit {number}", paragraphs), kind)
    if kind == "md":
        lines = [f"# {marker} visit {number}", "", paragraphs[0], "", "## Findings", ""]
        lines += [f"- {paragraph}" for paragraph in paragraphs[1:]]
        return SoakDocument(f"{name}.md", ("\n".join(lines) + "\n").encode(), kind)
    return SoakDocument(f"{name}.txt", ("\n\n".join(paragraphs) + "\n").encode(), kind)


def choose_kind(rng: random.Random) -> Kind:
    return rng.choices(KINDS, weights=KIND_WEIGHTS)[0]


def search_query(rng: random.Random, marker: str, mode: str) -> str:
    """A clinical question; in hybrid mode with the tenant's marker, so the full-text half matches too."""
    question = rng.choice(QUESTIONS)
    return f"{marker} {question}" if mode == "hybrid" else question
