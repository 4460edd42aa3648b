"""The compiled hot path (``citycard._compiled``): a build is used only when made from the sources present,
the compiled modules decode exactly as their source does, and in CI (``CITYCARD_REQUIRE_COMPILED``, set by
``.ci/run`` after ``make`` built them) the tests run against the compiled modules."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard import _compiled
from citycard._compiled import MODULES, read_manifest, sources
from citycard.codec import tlv
from citycard.codec.iso8583 import Iso8583Error, wire

from tests.codec.iso8583.test_fast_codec import damaged


def _source_of(name: str) -> ModuleType:
    """Module ``name`` run from its source, beside whatever ``import`` gives (as ``<name>_source``)."""
    file = _compiled.module_file(name)
    assert file is not None
    spec = importlib.util.spec_from_file_location(f"{name}_source", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


WIRE_SOURCE = _source_of("citycard.codec.iso8583.wire")
TLV_SOURCE = _source_of("citycard.codec.tlv")


def _manifest(directory: Path, **changes: Any) -> Path:
    digests = _compiled.source_digests()
    files = {}
    for name in MODULES:  # stand-ins: only their presence is checked before import
        file = directory / (name.replace(".", "/") + ".so")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"")
        files[name] = str(file.relative_to(directory))
    manifest = {
        "python": sys.implementation.cache_tag,
        "modules": list(MODULES),
        "files": files,
        "sources": digests,
        **changes,
    }
    (directory / _compiled.MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_a_build_from_these_sources_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_compiled.PURE_ENV, raising=False)
    files, reason = read_manifest(_manifest(tmp_path))
    assert reason == "compiled"
    assert set(files) == set(MODULES)


def test_a_build_from_other_sources_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_compiled.PURE_ENV, raising=False)
    digests = _compiled.source_digests()
    edited = dict(digests, **{"citycard/codec/tlv.py": "0" * 64})
    files, reason = read_manifest(_manifest(tmp_path, sources=edited))
    assert files == {}
    assert "citycard/codec/tlv.py differs" in reason


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"failed": "CompileError: command 'gcc' failed"}, "the build failed: CompileError"),
        ({"python": "cpython-399"}, "built for another Python"),
        ({"modules": ["citycard.codec.tlv"]}, "another list of modules"),
    ],
)
def test_a_failed_or_foreign_build_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], expected: str
) -> None:
    monkeypatch.delenv(_compiled.PURE_ENV, raising=False)
    files, reason = read_manifest(_manifest(tmp_path, **changes))
    assert files == {}
    assert expected in reason


def test_no_build_or_the_pure_switch_means_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_compiled.PURE_ENV, raising=False)
    assert read_manifest(tmp_path) == ({}, f"not built ({tmp_path})")
    monkeypatch.setenv(_compiled.PURE_ENV, "1")
    assert read_manifest(_manifest(tmp_path)) == ({}, f"{_compiled.PURE_ENV} is set")


def test_the_sources_a_build_depends_on_include_what_the_compiled_modules_import() -> None:
    found = sources()
    assert set(MODULES) <= found.keys()
    # imported by a compiled module (hosts.zone → hsm.api; codec.iso8583.wire → its spec), and the finder
    assert {"citycard.hsm.api", "citycard.codec.iso8583.spec", "citycard._compiled"} <= found.keys()
    assert "citycard.cli" not in found  # nothing a compiled module does not reach


def test_in_ci_the_hot_path_runs_compiled() -> None:
    for name in MODULES:
        importlib.import_module(name)
    compiled, line = _compiled.status()
    if not compiled and not os.environ.get("CITYCARD_REQUIRE_COMPILED"):
        pytest.skip(line)
    assert compiled, line
    for name in MODULES:
        assert str(sys.modules[name].__file__).endswith(".so"), name
    assert wire.__file__ is not None and not wire.__file__.endswith(".py")


def _decoded(module: ModuleType, data: bytes) -> object:
    try:
        message = module.decode_message(data)
    except Iso8583Error as exc:
        return ("error", exc.field, exc.position, exc.reason, exc.mti, dict(exc.echo))
    return ("message", message.mti, dict(message.fields), dict(message.offsets))


@settings(max_examples=600, deadline=None)
@given(st.one_of(damaged(), st.binary(max_size=80)))
def test_the_codec_imported_decodes_as_its_source_does(data: bytes) -> None:
    outcome: Any = _decoded(wire, data)
    assert outcome == _decoded(WIRE_SOURCE, data)
    if outcome[0] == "message":
        mti, fields = outcome[1], outcome[2]
        assert wire.encode_checked(wire.RawMessage(mti, fields)) == data
        assert WIRE_SOURCE.encode_checked(WIRE_SOURCE.RawMessage(mti, fields)) == data


def _objects(module: ModuleType, data: bytes) -> object:
    def flat(objects: Any) -> list[object]:
        return [(o.tag, o.value, o.offset, None if o.children is None else flat(o.children)) for o in objects]

    try:
        return flat(module.decode(data, offset=3))
    except tlv.TlvError as exc:
        return ("error", exc.reason, exc.offset)
    except TLV_SOURCE.TlvError as exc:  # the source's own class: same text, same offset
        return ("error", exc.reason, exc.offset)


_TAGS = st.sampled_from(["9F26", "82", "9F10", "70", "BF0C", "5F2A"])


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.lists(st.tuples(_TAGS, st.binary(max_size=140))).map(
            lambda items: b"".join(tlv.encode(tag, value) for tag, value in items)
        ),
    )
)
def test_tlv_imported_decodes_as_its_source_does(data: bytes) -> None:
    assert _objects(tlv, data) == _objects(TLV_SOURCE, data)


def test_no_compiled_function_names_two_kinds_of_exception_alike() -> None:
    """mypyc gives a local one type, the first it sees: ``except TlvError as exc`` then ``except
    (CryptogramDataError, ValueError) as exc`` in one compiled function raised TypeError at the second
    (issuer.chipdata: a malformed 9F10 was answered 96, a bug, where its source answers 30). Each except
    clause of a compiled module that binds a name binds one used for no other exception type there."""
    import ast

    clashes = []
    for name in MODULES:
        file = _compiled.module_file(name)
        assert file is not None
        for function in ast.walk(ast.parse(file.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            kinds: dict[str, set[str]] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                    kinds.setdefault(node.name, set()).add(ast.unparse(node.type))
            clashes += [f"{name}.{function.name}: {n} {sorted(k)}" for n, k in kinds.items() if len(k) > 1]
    assert not clashes
