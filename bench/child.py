"""Run one measurement and print its figures as JSON on the last line.

Usage: ``python -m bench.child SPEC`` where SPEC is a JSON object whose
``case`` names a function as ``module.function`` inside this package.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys

from .common import emit


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    module_name, function_name = spec["case"].rsplit(".", 1)
    module = importlib.import_module(f"{__package__}.{module_name}")
    result = getattr(module, function_name)(spec)
    emit(result)


if __name__ == "__main__":
    main()
