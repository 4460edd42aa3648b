"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (``make bench`` runs them all).

Each ``benchmarks/bench_<name>.py`` has a ``main()`` that measures our operations beside a baseline taken in
the same run and prints a table; results and the command are recorded in ``docs/performance.md``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from citycard import _compiled


def main(argv: list[str]) -> None:
    here = Path(__file__).parent
    names = sorted(m.name[6:] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    chosen = argv or names
    for name in chosen:
        if name not in names:
            raise SystemExit(f"no benchmark {name!r}; have: {', '.join(names)}")
    print(f"the hot path's modules (citycard._compiled): {_compiled.status()[1]}")
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
