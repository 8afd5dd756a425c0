"""The table of every system scenario at the end of the session (a plugin of the root
conftest), also written to ``.run/system-table-<database>.md``.

Under pytest-xdist the scenarios run in a worker, whose ``ledger.RESULTS`` the controller does
not see: each worker hands its results over in ``workeroutput`` when it finishes, and the
controller, which prints the terminal summary, adds them up.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from tests.harness.processes import REPO_ROOT
from tests.system import ledger

TABLE_DIR = REPO_ROOT / ".run"
WORKER_OUTPUT_KEY = "gomail_system_results"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput[WORKER_OUTPUT_KEY] = [asdict(result) for result in ledger.RESULTS]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: a worker finished; take its scenarios' results."""
    results = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY, [])
    ledger.RESULTS.extend(ledger.ScenarioResult(**result) for result in results)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ledger.RESULTS:
        return
    text = ledger.table(ledger.RESULTS)
    databases = "-".join(sorted({r.database for r in ledger.RESULTS}))
    TABLE_DIR.mkdir(exist_ok=True)
    path = TABLE_DIR / f"system-table-{databases}.md"
    path.write_text(text + "\n")
    terminalreporter.section("system scenarios: where every accepted email ended")
    terminalreporter.write_line(text)
    terminalreporter.write_line(f"(also written to {path})")
