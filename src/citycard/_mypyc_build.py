"""Build the compiled modules (:mod:`citycard._compiled`): ``python -m citycard._mypyc_build``, as ``make``
runs it.

``python -m citycard._mypyc_build status`` says whether they run compiled, and why not when not.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from citycard import _compiled
from citycard._compiled import MANIFEST, MODULES, compiled_dir
from citycard.durable import atomic_write

__all__ = ["build", "main"]


def build(directory: Path | None = None, *, quiet: bool = True) -> str:
    """Compile :data:`MODULES` with mypyc into ``directory`` (default :func:`compiled_dir`); a line saying
    what was done. Nothing is done when the build there is already from these sources. The previous build
    is replaced only once the new one is complete; a failure (no C compiler, no Python headers) is written
    to the manifest, so the sources run and ``make`` does not try again until they change."""
    directory = directory or compiled_dir()
    files, _ = _compiled.read_manifest(directory)
    if files:
        return f"compiled modules up to date in {directory}"
    digests = _compiled.source_digests()
    previous = _previous(directory)
    if previous.get("failed") and previous.get("sources") == digests:
        return f"not compiled: the last build of these sources failed ({previous['failed']})"
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="citycard-mypyc-", dir=directory.parent))
    try:
        try:
            built = _compile(work, quiet=quiet)
        except Exception as exc:  # no compiler, no headers, a type error: the source still runs
            failed = f"{type(exc).__name__}: {exc}".strip().splitlines()[-1][:300]
            _replace(directory, work / "out", {"failed": failed, "sources": digests})
            return f"not compiled ({failed}); the modules run as source"
        manifest = {
            "python": sys.implementation.cache_tag,
            "modules": list(MODULES),
            "files": {name: str(path.relative_to(work / "out")) for name, path in built.items()},
            "sources": digests,
        }
        _replace(directory, work / "out", manifest)
        return f"compiled {len(MODULES)} modules with mypyc into {directory}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _previous(directory: Path) -> dict[str, Any]:
    try:
        previous: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return previous


def _compile(work: Path, *, quiet: bool) -> dict[str, Path]:
    """mypyc over :data:`MODULES`, built by setuptools into ``work/out``: module name → extension file."""
    from mypyc.build import mypycify  # the build's own tools: imported only to build
    from setuptools import Distribution  # type: ignore[import-untyped]

    out = work / "out"
    paths = [str(_compiled.module_file(name)) for name in MODULES]
    config = _compiled.SRC_DIR.parent / "pyproject.toml"  # the project's mypy settings, from a checkout
    options = ["--config-file", str(config)] if config.is_file() else ["--ignore-missing-imports"]
    options += ["--cache-dir", str(work / "mypy")]
    cwd = Path.cwd()
    os.chdir(_compiled.SRC_DIR)
    said = io.StringIO()  # mypyc's notes ("Treating generator comprehension as list"), and its errors
    try:
        try:
            with contextlib.redirect_stdout(said if quiet else sys.stdout):
                extensions = mypycify(
                    [*options, *paths], opt_level="3", target_dir=str(work / "c"), verbose=not quiet
                )
        except SystemExit as exc:  # a type error: mypyc printed it and exits
            errors = [line for line in said.getvalue().splitlines() if ": error:" in line]
            raise RuntimeError(errors[0] if errors else f"mypyc exited with {exc.code}") from None
        distribution = Distribution({"name": "citycard-compiled", "ext_modules": extensions})
        distribution.script_args = [
            *(["--quiet"] if quiet else []),
            *("build_ext", "--build-lib", str(out), "--build-temp", str(work / "o")),
        ]
        distribution.parse_command_line()
        distribution.run_commands()
    finally:
        os.chdir(cwd)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    built: dict[str, Path] = {}
    for file in out.rglob("*"):
        if file.name.endswith(suffixes):
            stem = file.name.split(".", 1)[0]
            package = file.parent.relative_to(out).parts
            built[".".join((*package, stem))] = file
    missing = set(MODULES) - built.keys()
    if missing:
        raise RuntimeError(f"mypyc built no extension for {sorted(missing)}")
    return built


def _replace(directory: Path, out: Path, manifest: dict[str, Any]) -> None:
    """``directory`` becomes ``out``'s files and ``manifest``: the old manifest goes first (nothing is used
    from a half-replaced build), the new one last, written atomically. A process that loaded the old
    extensions keeps them (their files are unlinked, not overwritten)."""
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    if out.is_dir():
        shutil.copytree(out, directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def main(argv: Sequence[str]) -> int:
    """``python -m citycard._mypyc_build [build [DIR]]``, or ``status``."""
    if argv[:1] in ([], ["build"]):
        print(build(Path(argv[1]) if len(argv) > 1 else None))
        return 0
    if argv[:1] == ["status"]:
        print(_compiled.status()[1])
        return 0
    print("usage: python -m citycard._mypyc_build [build [DIR] | status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
