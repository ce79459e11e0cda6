"""Run the ``pulse-trio`` command line: ``python -m pulse_trio --help``."""

from ._cli import main

raise SystemExit(main())
