"""Text extracted from a document, before chunking."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A run of text with where it came from: the 1-based page (PDF) and the nearest heading."""

    text: str
    page: int | None = None
    heading: str | None = None


class ContentError(Exception):
    """A document that cannot be processed, with a stable code and a message a person can act on.

    Codes: `unsupported_content`, `encrypted_pdf`, `no_text`, `too_many_pages`, `corrupt_file`,
    `too_large`. Messages never quote document content.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
