"""``python -m bench <name> [options]``: see ``bench.cli``."""

from bench.cli import main

raise SystemExit(main())
