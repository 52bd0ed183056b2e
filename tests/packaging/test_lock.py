"""The environment the suite runs in is exactly the lock: every pinned package, at its pinned version."""

from __future__ import annotations

import itertools
import re
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_every_pin_has_a_hash() -> None:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    unhashed = [line for line, after in itertools.pairwise(lines) if PIN.match(line) and "--hash=" not in after]
    assert len(locked()) > 100
    assert unhashed == []


def test_installed_versions_are_the_locked_ones() -> None:
    have = installed()
    mismatched = {name: (version, have.get(name)) for name, version in locked().items() if have.get(name) != version}
    assert mismatched == {}


def test_nothing_is_installed_beyond_the_lock_and_the_project() -> None:
    extra = set(installed()) - set(locked()) - {"phivault"}
    assert extra == set()


def test_torch_is_the_cpu_build_named_in_the_constraints() -> None:
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert locked()["torch"] == "2.13.0+cpu"


def test_the_runtime_lock_is_the_same_resolution() -> None:
    """The image installs requirements-runtime.lock: every one of its pins is the one the suite ran with."""
    runtime: dict[str, str] = {}
    for line in (ROOT / "requirements-runtime.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            runtime[canonicalize_name(match[1])] = match[2]
    full = locked()
    assert {"celery", "torch", "sentence-transformers"} <= set(runtime)
    assert {"pytest", "mypy", "moto"}.isdisjoint(runtime)
    assert {name: version for name, version in runtime.items() if full.get(name) != version} == {}
