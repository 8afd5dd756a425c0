"""Side-by-side benchmarks of the service (issue #12): ``python -m bench <name> [options]``.

Each benchmark starts what it measures through ``tests.harness`` (the Procfile's processes),
prints a Markdown table and writes its figures as JSON to ``.run/bench/<name>.json``. How each
one measures is in ``docs/performance.md``.

- ``cli``: the command line; ``stack``: the service and its stand-ins for one benchmark.
- ``load``: the multi-process load generator; ``counting``: AWS calls by action;
  ``cpu``: CPU seconds of a process and its children, from /proc.
- ``moto_server`` and ``sqs_constant``: the SQS stand-ins (moto with counters; a constant-time
  one); ``deliveries``: where each email went, at the providers.
- ``ingest``, ``raw``, ``ceiling``, ``pipeline``, ``latency``, ``failover``: one module per
  benchmark; ``report``: tables, JSON and the original service's figures (``reference``).
"""
