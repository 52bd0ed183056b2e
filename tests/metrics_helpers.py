"""Reading Prometheus scrapes in tests, and a broker of a test's own."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from core.embedded import start_redis
from core.runtime import Services

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def matching(scrape: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in scrape if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(scrape: list[Sample], name: str, **labels: str) -> float:
    """The one sample `name{labels}` (asserting there is exactly one)."""
    found = matching(scrape, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def label_values(scrape: list[Sample]) -> set[str]:
    return {v for s in scrape for v in s.labels.values()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def own_broker(services: Services) -> Iterator[Services]:
    """The session's database with a Redis of its own, so no other worker in the session takes its messages."""
    directory = Path(tempfile.mkdtemp(prefix="phivault-broker-"))
    redis = start_redis(directory)
    try:
        yield Services(database=services.database, redis_url=redis.url, embedded_redis=redis)
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)
