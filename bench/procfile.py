"""How the Procfile runs the API and the workers, read at run time from the measured checkout's
``Procfile``, so that a change to it (more gunicorn workers, threads, another worker class, a
different pool size) is what the benchmarks measure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

# gunicorn options the harness sets itself, with the number of values each takes.
_GUNICORN_OWN = {"--bind": 1, "-b": 1, "--workers": 1, "-w": 1, "--threads": 1}
_GUNICORN_ACCESS_LOG = "--access-logfile"


@dataclass(frozen=True)
class WebCommand:
    """The ``web`` line's gunicorn: workers and threads (None: the line leaves them to
    ``gunicorn.conf.py`` in the checkout, read by gunicorn from its working directory), access
    log, and any other options."""

    workers: int | None = None
    threads: int | None = None
    access_log: bool = False
    extra_args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerCommand:
    """A ``celery worker`` line: its queues (None: the line asks ``manage.py
    provider_queues``, i.e. the configured providers of the configuration it runs with) and pool
    size."""

    queues: list[str] | None
    concurrency: int


def process_commands(root: Path) -> dict[str, list[str]]:
    """Each Procfile process's final command (what it ``exec``s after its set-up), as argv."""
    commands = {}
    for line in (root / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if not sep or line.lstrip().startswith("#"):
            continue
        final = command.rsplit("&& exec ", 1)[-1].rsplit("&&", 1)[-1]
        commands[name.strip()] = shlex.split(final)
    return commands


def _split_option(token: str) -> tuple[str, str | None]:
    name, sep, value = token.partition("=")
    return (name, value) if sep and name.startswith("--") else (token, None)


def web_command(root: Path) -> WebCommand:
    """The ``web`` line's gunicorn options (``ValueError`` if there is no gunicorn there)."""
    argv = process_commands(root)["web"]
    if not any(part.endswith("gunicorn") for part in argv[:1]):
        raise ValueError(f"the web line of {root / 'Procfile'} does not run gunicorn: {argv}")
    values: dict[str, str] = {}
    extra: list[str] = []
    tokens = iter(argv[2:])  # after the program and the WSGI app
    for token in tokens:
        name, inline = _split_option(token)
        if name in _GUNICORN_OWN or name == _GUNICORN_ACCESS_LOG:
            values[name] = inline if inline is not None else next(tokens, "")
        else:
            extra.append(token)
    workers = values.get("--workers", values.get("-w"))
    threads = values.get("--threads")
    return WebCommand(
        workers=int(workers) if workers else None,
        threads=int(threads) if threads else None,
        access_log=_GUNICORN_ACCESS_LOG in values,
        extra_args=extra,
    )


def worker_command(root: Path, name: str) -> WorkerCommand:
    """The ``-Q`` queues and ``--concurrency`` of the Procfile's ``celery worker`` line ``name``."""
    argv = process_commands(root)[name]
    options: dict[str, str] = {}
    for index, token in enumerate(argv):
        option, inline = _split_option(token)
        if option in ("-Q", "--queues", "-c", "--concurrency"):
            options[option.lstrip("-")[:1].upper()] = (
                inline if inline is not None else argv[index + 1]
            )
    queues = options["Q"]
    from_config = queues.startswith("$(") and "provider_queues" in queues
    return WorkerCommand(
        queues=None if from_config else queues.split(","),
        concurrency=int(options.get("C", "1")),
    )
