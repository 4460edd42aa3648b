"""The hot path's modules compiled to C by mypyc, loaded in place of their source only when built from it.

:data:`MODULES` are pure-Python modules of the authorization path (the ISO 8583 codec, BER-TLV, the MACs,
the frames, the issuer's decision, the acquirer's handlers, the ledger engine) that mypyc, mypy's compiler,
turns into C extensions from their type annotations: the same code, 1.5-2× as fast
(``docs/performance.md``). ``make`` builds them into the virtual environment (``python -m
citycard._mypyc_build``: ``<venv>/citycard-compiled``, or ``$CITYCARD_COMPILED_DIR``) with a manifest of the
sources they were built from: each compiled module and every citycard module it imports, transitively, by
content hash.

:func:`install` (called by ``citycard/__init__.py``) puts a finder first on ``sys.meta_path``. At the first
import of one of :data:`MODULES` it reads the manifest once; when every source it names is byte for byte
the one the build read, the compiled modules are imported instead of their source, all of them, and
otherwise none (mypyc compiles them together: one calls another's code directly, so half a build is never
used). Nothing built, a build from other sources (an edit since, another checkout), ``CITYCARD_PURE_PYTHON=1``
or no C compiler at build time: the source runs, as it always can. :func:`status` says which.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any, Final

__all__ = ["MODULES", "compiled_dir", "install", "source_digests", "sources", "status"]

MODULES: Final = (
    "citycard.codec.tlv",
    "citycard.codec.iso8583.wire",
    "citycard.crypto.mac",
    "citycard.crypto.pos_mac",
    "citycard.net.framing",
    "citycard.hosts.zone",
    "citycard.hosts.answers",
    "citycard.issuer.chipdata",
    "citycard.issuer.decision",
    "citycard.acquirer.handlers",
    "citycard.ledger.engine",
    "citycard.db.driver",
)
"""The modules compiled, by name (a module is added once its tests pass compiled and its source alike)."""

PURE_ENV: Final = "CITYCARD_PURE_PYTHON"
DIR_ENV: Final = "CITYCARD_COMPILED_DIR"
MANIFEST: Final = "manifest.json"
PACKAGE_DIR: Final = Path(__file__).resolve().parent  # the citycard package whose sources count
SRC_DIR: Final = PACKAGE_DIR.parent


def compiled_dir() -> Path:
    """Where the build goes and is looked for: ``$CITYCARD_COMPILED_DIR``, else
    ``<sys.prefix>/citycard-compiled``."""
    return Path(os.environ.get(DIR_ENV) or Path(sys.prefix) / "citycard-compiled")


def module_file(name: str) -> Path | None:
    """The source file of citycard module ``name`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != "citycard":
        return None
    base = SRC_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, file: Path) -> set[str]:
    """The citycard modules ``file`` (module ``name``) imports, and the packages above each."""
    tree = ast.parse(file.read_bytes(), str(file))
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, when it is one
    modules = {module for module in found if module.split(".")[0] == "citycard"}
    for module in list(modules):
        parts = module.split(".")
        modules.update(".".join(parts[:end]) for end in range(1, len(parts)))
    return modules


def sources(modules: Sequence[str] = MODULES) -> dict[str, Path]:
    """``modules`` and every citycard module they import, transitively (this one too): name → source file."""
    found: dict[str, Path] = {}
    waiting = [*modules, "citycard._compiled"]
    while waiting:
        name = waiting.pop()
        if name in found:
            continue
        file = module_file(name)
        if file is None:
            continue
        found[name] = file
        waiting.extend(_imports(name, file) - found.keys())
    return found


def digest(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def source_digests() -> dict[str, str]:
    """What a build records and is checked against: each file of :func:`sources`, relative to ``src``, and
    its SHA-256."""
    return {file.relative_to(SRC_DIR).as_posix(): digest(file) for file in sources().values()}


class _Finder(importlib.abc.MetaPathFinder):
    """Finds :data:`MODULES` (and mypyc's shared library) in a build whose manifest matches the sources."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, Path] | None = None  # None: the manifest not read yet
        self.reason = "not looked for yet"

    def load(self) -> dict[str, Path]:
        if self.files is None:
            self.files, self.reason = read_manifest(self.directory)
        return self.files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if self.files is None and fullname not in MODULES:  # the common case: not ours, nothing read
            return None
        file = self.load().get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def read_manifest(directory: Path) -> tuple[dict[str, Path], str]:
    """The compiled files by module name, and why there are none when there are none."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return {}, f"{PURE_ENV} is set"
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return {}, f"not built ({directory})"
    except (OSError, ValueError) as exc:
        return {}, f"unreadable manifest in {directory}: {exc}"
    if manifest.get("failed"):
        return {}, f"the build failed: {manifest['failed']}"
    if (
        manifest.get("python") != sys.implementation.cache_tag
        or tuple(manifest.get("modules", ())) != MODULES
    ):
        return {}, "built for another Python or another list of modules"
    for name, built_from in manifest["sources"].items():
        file = SRC_DIR / name
        if not file.is_file() or digest(file) != built_from:
            return {}, f"built from other sources ({name} differs): run make"
    files = {name: directory / file for name, file in manifest["files"].items()}
    if not all(file.is_file() for file in files.values()):
        return {}, f"incomplete build in {directory}"
    return files, "compiled"


_finder: _Finder | None = None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): it reads nothing until a compiled module is
    imported."""
    global _finder
    if _finder is None:
        _finder = _Finder(compiled_dir())
        sys.meta_path.insert(0, _finder)


def status() -> tuple[bool, str]:
    """(whether :data:`MODULES` run compiled, a line saying so or why not), once they are imported (they
    are imported here if they were not)."""
    for name in MODULES:
        importlib.import_module(name)
    if _finder is None:
        return False, "source (the finder is not installed)"
    if not _finder.load():
        return False, f"source: {_finder.reason}"
    early = [name for name in MODULES if name in sys.modules and not _is_extension(name)]
    if early:
        return False, f"source: {early[0]} was imported before the finder was installed"
    return True, f"compiled by mypyc: {len(MODULES)} modules ({_finder.directory})"


def _is_extension(name: str) -> bool:
    file = sys.modules[name].__file__ or ""
    return file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
