"""template.json, read the way Railway deploys it: commands split, secrets generated, references filled in."""

from __future__ import annotations

import json
import re
import secrets
import shlex
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.json"
APP_SERVICES = ("api", "worker", "beat")

_SECRET = re.compile(r'\$\{\{\s*secret\(\s*(\d+)\s*,\s*"([^"]+)"\s*\)\s*\}\}')
_REFERENCE = re.compile(r"\$\{\{\s*([A-Za-z0-9_-]+)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def load_template() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(TEMPLATE_PATH.read_text())
    return template


def _generate_secrets(value: str) -> str:
    """Every `${{secret(length, "alphabet")}}` replaced by a fresh random string; text around it kept."""
    return _SECRET.sub(lambda m: "".join(secrets.choice(m.group(2)) for _ in range(int(m.group(1)))), value)


def _substitute(value: str, references: dict[str, dict[str, str]], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        service, name = match.group(1), match.group(2)
        try:
            return references[service][name]
        except KeyError:
            raise KeyError(f"{where}: unknown reference ${{{{{service}.{name}}}}}") from None

    if "${{" in _REFERENCE.sub("", value):
        # A function other than secret(length, "alphabet"), or a same-service `${{VAR}}`: not what an
        # application service's variables may hold, so refuse it rather than pass it on verbatim.
        raise ValueError(f"{where}: a template expression other than secret(), service.VAR or shared.VAR")
    return _REFERENCE.sub(one, value)


def resolve_variables(template: dict[str, Any], references: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Each application service's variables as Railway would set them.

    Shared secrets are generated once and are the same in every service; `${{service.VAR}}` comes from `references`
    (e.g. `{"postgres": {"DATABASE_URL": ...}}`), `${{shared.VAR}}` from the generated shared variables. A reference
    that neither holds raises `KeyError`; any other `${{...}}` raises `ValueError`.
    """
    shared = {name: _generate_secrets(value) for name, value in template.get("sharedVariables", {}).items()}
    known = {**references, "shared": shared}
    resolved: dict[str, dict[str, str]] = {}
    for service in APP_SERVICES:
        variables: dict[str, str] = template["services"][service]["variables"]
        resolved[service] = {
            name: _substitute(_generate_secrets(value), known, f"{service}.{name}") for name, value in variables.items()
        }
    return resolved


def start_command(template: dict[str, Any], service: str) -> list[str]:
    return shlex.split(template["services"][service]["deploy"]["startCommand"])


def pre_deploy_command(template: dict[str, Any], service: str) -> list[str] | None:
    command: str | None = template["services"][service]["deploy"].get("preDeployCommand")
    return None if command is None else shlex.split(command)
