"""Fuzzing: one hypothesis profile for the short run in `make test`, one for `make fuzz`, and a summary
of what the run tried and what it found.

The profiles are applied to the fuzz tests only (`FUZZ_SETTINGS`), never loaded globally, so the rest of
the suite keeps its own settings. They are not called "ci": hypothesis has a built-in profile of that
name, loaded by itself when `CI` is set, and re-registering it would change every test in the session.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings

PROFILE_VARIABLE = "PHIVAULT_FUZZ_PROFILE"
EXAMPLES_VARIABLE = "PHIVAULT_FUZZ_EXAMPLES"
"""Examples per test in the long profile (default 400)."""
SHORT_PROFILE = "fuzz-ci"
LONG_PROFILE = "fuzz"

_SLOW_IS_EXPECTED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    SHORT_PROFILE,
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same examples on every run: `make test` must not fail by chance
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_EXPECTED,
)
settings.register_profile(
    LONG_PROFILE,
    max_examples=int(os.environ.get(EXAMPLES_VARIABLE, "400")),
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_EXPECTED,
)

FUZZ_PROFILE = os.environ.get(PROFILE_VARIABLE, SHORT_PROFILE)
FUZZ_SETTINGS = settings.get_profile(FUZZ_PROFILE)
"""What every test in this package runs with: `@settings(FUZZ_SETTINGS)`, or a parent of its own settings."""

STATEFUL_SETTINGS = settings(
    FUZZ_SETTINGS,
    max_examples=max(3, FUZZ_SETTINGS.max_examples // 4),
    stateful_step_count=6,
    phases=[Phase.generate],
)
"""A scenario is a sequence of calls, so fewer of them. Generated only, as schemathesis runs its own: which
rules a scenario may take depends on the server's earlier answers, which a replay cannot reproduce."""


@dataclass
class FuzzReport:
    """Counts kept while the fuzz tests run, printed at the end of the session."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    examples: Counter[str] = field(default_factory=Counter)

    def response(self, operation: str, status: int) -> None:
        self.statuses.setdefault(operation, Counter())[status] += 1

    def lines(self) -> list[str]:
        lines = []
        if self.statuses:
            requests = sum(sum(counts.values()) for counts in self.statuses.values())
            labels = [*FAILURE_LABELS.values(), AUTHORIZATION_LABEL]
            failures = ", ".join(f"{self.failures[label]} {label}" for label in labels)
            lines.append(f"schemathesis: {len(self.statuses)} operations, {requests} requests, {failures}")
            for operation, counts in sorted(self.statuses.items()):
                by_status = ", ".join(f"{status} x{count}" for status, count in sorted(counts.items()))
                lines.append(f"  {operation}: {by_status}")
        if self.examples:
            tried = ", ".join(f"{name} {count}" for name, count in sorted(self.examples.items()))
            lines.append(f"ingest properties: examples run: {tried}")
        return lines


FAILURE_LABELS = {
    "not_a_server_error": "server errors",
    "response_schema_conformance": "schema violations",
    "status_code_conformance": "undocumented statuses",
    "content_type_conformance": "content-type mismatches",
    "response_headers_conformance": "header mismatches",
}
"""Each check the fuzzer runs on every response, and how the summary names its failures."""
AUTHORIZATION_LABEL = "authorization violations"
"""A 2xx answered to a role the contract does not admit for that operation."""

REPORT = FuzzReport()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = REPORT.lines()
    if lines:
        terminalreporter.section(f"fuzzing (hypothesis profile {FUZZ_PROFILE!r})")
        for line in lines:
            terminalreporter.write_line(line)
