"""Static checks of the Dockerfile and of every command the deploy descriptors run (no Docker engine needed)."""

from __future__ import annotations

import re

import pytest
import typer

from core.cli import app
from tests.deploy.template import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DESCRIPTORS = [ROOT / "Dockerfile", ROOT / "template.json", *sorted((ROOT / "railway").glob("*.json"))]
SECRET_NAME = re.compile(r"JWT_SECRET|MASTER_KEY|PASSWORD|TOKEN|SECRET_ACCESS_KEY")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions(DOCKERFILE.read_text())
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(starts) >= 2, "the image is built in (at least) two stages"
    return instructions[starts[-1] :]


def _cli_commands(group: typer.Typer) -> set[str]:
    names = {
        command.name or (command.callback.__name__ if command.callback else "") for command in group.registered_commands
    }
    names |= {group_info.name for group_info in group.registered_groups if group_info.name}
    return names


def test_every_phivault_command_named_exists() -> None:
    available = _cli_commands(app)
    named = {(path.name, match) for path in DESCRIPTORS for match in re.findall(r"\bphivault (\w+)", path.read_text())}
    named |= {(DOCKERFILE.name, match) for match in re.findall(r'"phivault",\s*"(\w+)"', DOCKERFILE.read_text())}
    assert {command for _, command in named} >= {"api", "worker", "beat", "migrate"}
    assert {(where, command) for where, command in named if command not in available} == set()


def test_cli_command_check_can_fail() -> None:
    assert "deploy" not in _cli_commands(app)


def test_final_stage_runs_as_a_fixed_non_root_user() -> None:
    users = [args for keyword, args in _final_stage() if keyword == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid, so platforms can check runAsNonRoot"


def test_final_stage_installs_the_lock_by_hash_then_the_wheel_alone() -> None:
    runs = [args for keyword, args in _final_stage() if keyword == "RUN"]
    lock = [run for run in runs if "-r /tmp/requirements-runtime.lock" in run]
    assert any("pip install" in run and "--require-hashes" in run for run in lock)
    assert any("pip install" in run and "--no-deps" in run and ".whl" in run for run in runs)
    copies = " ".join(args for keyword, args in _final_stage() if keyword == "COPY")
    assert "requirements-runtime.lock" in copies
    assert "--from=builder" in copies


def test_builder_makes_the_wheel_without_dependencies() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip wheel[^\n]*--no-deps[^\n]*--no-build-isolation", text)


def test_no_model_download_at_run_time() -> None:
    envs = " ".join(args for keyword, args in _final_stage() if keyword == "ENV")
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", envs)


def test_healthcheck_asks_readyz() -> None:
    checks = [args for keyword, args in _final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/readyz" in checks[0]
    assert "PORT" in checks[0]


@pytest.mark.parametrize("keyword", ["ARG", "ENV"])
def test_no_secret_is_baked_in(keyword: str) -> None:
    for instruction, args in _instructions(DOCKERFILE.read_text()):
        if instruction != keyword:
            continue
        for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", args):
            if SECRET_NAME.search(name.upper()):
                assert not value, f"{keyword} {name} has a value in the image"


def test_no_compilers_in_the_final_stage() -> None:
    stage = " ".join(args for _, args in _final_stage())
    for tool in ("gcc", "g++", "build-essential", "make "):
        assert tool not in stage


def test_dockerignore_keeps_the_checkout_out() -> None:
    entries = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".phivault"} <= entries
