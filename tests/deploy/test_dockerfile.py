"""Static checks of the Dockerfile and of every command the deploy descriptors run (no Docker engine needed)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
import typer

from cli.main import app
from tests.deploy.template import APP_SERVICES, ROOT, load_template

DOCKERFILE = ROOT / "Dockerfile"
DESCRIPTORS = [ROOT / "Dockerfile", ROOT / "template.json", *sorted((ROOT / "railway").glob("*.json"))]
SECRET_NAME = re.compile(r"SECRET|MASTER_KEY|PASSWORD|TOKEN|ACCESS_KEY|DATABASE_URL|REDIS_URL")


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


def _parse(command_line: list[str]) -> str:
    """Parse a `phivault ...` command line with the real CLI, without running it; its command path.

    Subcommands are resolved group by group and the last one parses its options and arguments, so an unknown
    command, an unknown option or a missing argument raises (a `typer.TyperException`).
    """
    program, *rest = command_line
    assert program == "phivault", command_line
    command: Any = typer.main.get_command(app)
    parent, name = None, program
    while hasattr(command, "resolve_command"):  # a group: the next word names one of its commands
        assert rest, f"{command_line}: no command"
        parent = command.context_class(command, info_name=name, parent=parent)
        name, command, rest = command.resolve_command(parent, rest)
    path: str = command.make_context(name, rest, parent=parent).command_path
    return path


def _deploy_commands(deploy: dict[str, Any]) -> list[list[str]]:
    pre_deploy = deploy.get("preDeployCommand", [])
    lines = [deploy["startCommand"], *([pre_deploy] if isinstance(pre_deploy, str) else pre_deploy)]
    return [shlex.split(line) for line in lines]


def _command_lines() -> dict[str, list[list[str]]]:
    """Every command line the deploy descriptors run, by where it is written."""
    template = load_template()
    found = {
        f"template.json {service}": _deploy_commands(template["services"][service]["deploy"])
        for service in APP_SERVICES
    }
    for path in sorted((ROOT / "railway").glob("*.json")):
        found[f"railway/{path.name}"] = _deploy_commands(json.loads(path.read_text())["deploy"])
    cmds = [args for keyword, args in _final_stage() if keyword == "CMD"]
    found["Dockerfile CMD"] = [json.loads(cmds[-1])]
    return found


def test_every_command_the_deployment_runs_parses() -> None:
    lines = _command_lines()
    assert {where for where in lines if where.startswith("railway/")} == {f"railway/{s}.json" for s in APP_SERVICES}
    paths = {_parse(line) for command_lines in lines.values() for line in command_lines}
    assert paths == {"phivault api", "phivault worker", "phivault beat", "phivault migrate"}


def test_every_phivault_command_named_exists() -> None:
    """Prose too: each `phivault <command>` the descriptors mention (comments included) is a real command."""
    available = _cli_commands(app)
    named = {(path.name, match) for path in DESCRIPTORS for match in re.findall(r"\bphivault (\w+)", path.read_text())}
    assert {command for _, command in named} >= {"api", "worker", "beat", "migrate"}
    assert {(where, command) for where, command in named if command not in available} == set()


@pytest.mark.parametrize(
    ("command_line", "error"),
    [
        ("phivault deploy", "No such command"),
        ("phivault api --workers 4", "No such option"),
        ("phivault api --port http", "valid int"),
        ("phivault tenant create", "Missing"),
        ("phivault audit check --tenant x", "No such command"),
    ],
)
def test_command_check_can_fail(command_line: str, error: str) -> None:
    with pytest.raises(typer.TyperException, match=error):
        _parse(shlex.split(command_line))


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


def _assignments(args: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of an ARG or ENV: `A=1 B=2`, a bare `ARG NAME`, or the legacy `ENV NAME value`."""
    words = shlex.split(args)
    if "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [(name, value) for name, _, value in (word.partition("=") for word in words)]


def _baked_secrets(dockerfile: str) -> list[str]:
    return [
        f"{keyword} {name}"
        for keyword, args in _instructions(dockerfile)
        if keyword in ("ARG", "ENV")
        for name, value in _assignments(args)
        if SECRET_NAME.search(name.upper()) and value
    ]


@pytest.mark.parametrize(
    ("instruction", "baked"),
    [
        ("ENV PHIVAULT_JWT_SECRET=x", True),
        ("ENV PHIVAULT_MASTER_KEY abc", True),
        ('ARG PHIVAULT_APP_DB_PASSWORD="p w"', True),
        ("ENV HF_HUB_OFFLINE=1 DATABASE_URL=postgresql://u:p@db/x", True),
        ("ARG PHIVAULT_METRICS_TOKEN", False),
        ("ENV HF_HUB_OFFLINE=1 PHIVAULT_DATA_DIR=/var/lib/phivault", False),
    ],
)
def test_secret_check_can_fail(instruction: str, baked: bool) -> None:
    assert bool(_baked_secrets(instruction)) is baked


def test_no_secret_is_baked_in() -> None:
    assert _baked_secrets(DOCKERFILE.read_text()) == []


def test_no_compilers_in_the_final_stage() -> None:
    stage = " ".join(args for _, args in _final_stage())
    for tool in ("gcc", "g++", "build-essential", "make "):
        assert tool not in stage


def test_dockerignore_keeps_the_checkout_out() -> None:
    entries = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".phivault"} <= entries
