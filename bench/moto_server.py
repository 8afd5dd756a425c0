"""The benchmarks' moto: ``devtools.moto_server`` as it is (backend calls serialised, long polls
released, one clock reading per SQS queue scan), with every request counted by service and
action (``bench.counting.CountingMiddleware``) and served at ``/_bench/calls``: no proxy hop
between the service and moto. Same command line and ready line:

    python -m bench.moto_server [--host H] [--port P] [--stock-scans]

Development tool only: like devtools.moto_server, it imports no Django or product package.
"""

from __future__ import annotations

import devtools.moto_server as moto_server
from bench.counting import AwsCallLog, CountingMiddleware


def main(argv: list[str] | None = None) -> int:
    log = AwsCallLog()
    build_app = moto_server.build_app
    # devtools.moto_server builds its app through this module attribute when it starts.
    moto_server.build_app = lambda: CountingMiddleware(build_app(), log)  # type: ignore[assignment]
    return moto_server.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
