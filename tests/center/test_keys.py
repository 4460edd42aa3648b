"""The demo's key injection of a terminal master key (TMK), the terminal's own key store
(``bootstrap.terminal_hsm``) and labels with segments in the HSM's directory store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from citycard import bootstrap
from citycard.center.model import MalformedCommand, tmk_label
from citycard.config import Settings
from citycard.crypto import des
from citycard.hsm.api import HsmInputError, KeyStoreError, KeyUsage
from citycard.hsm.injection import inject_terminal_master_key
from citycard.hsm.soft import DirectoryKeyStore, MemoryKeyStore, SoftHsm

CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def _fixed(size: int) -> bytes:
    assert size == 16
    return CLEAR


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_tmk_is_one_key_in_both_hsms_and_in_clear_in_no_file(tmp_path: Path) -> None:
    platform = SoftHsm(bytes(range(32)), DirectoryKeyStore(tmp_path / "platform"))
    terminal = SoftHsm(bytes(range(1, 33)), DirectoryKeyStore(tmp_path / "terminal"))
    label = tmk_label("T0000001")
    handle = inject_terminal_master_key(platform, terminal, label, random=_fixed)
    assert handle.kcv == des.kcv(des.adjust_parity(CLEAR)).hex().upper()
    assert terminal.get(label).kcv == handle.kcv and handle.usage is KeyUsage.KEK and handle.mode == "B"
    files = _files(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in files} == {
        "platform/terminal/T0000001/tmk.kb",
        "terminal/terminal/T0000001/tmk.kb",
    }
    clear = des.adjust_parity(CLEAR)
    for data in files.values():
        assert clear not in data and clear.hex().encode() not in data.lower()
        assert CLEAR.hex().encode() not in data.lower()
    # a second run (the commit after the injection failed) finds the same key in both
    assert inject_terminal_master_key(platform, terminal, label, random=_fixed) == handle


def test_an_injection_cut_short_is_refused_naming_where_the_key_is() -> None:
    platform, terminal = SoftHsm(bytes(range(32))), SoftHsm(bytes(range(1, 33)))
    platform.import_components("terminal/T0000001/tmk", KeyUsage.KEK, [CLEAR])
    with pytest.raises(KeyStoreError, match="only in the platform's HSM"):
        inject_terminal_master_key(platform, terminal, "terminal/T0000001/tmk")
    terminal.import_components("terminal/T0000001/tmk", KeyUsage.KEK, [bytes(16)])
    with pytest.raises(KeyStoreError, match="differ"):
        inject_terminal_master_key(platform, terminal, "terminal/T0000001/tmk")


def test_labels_with_segments_are_folders_and_never_leave_the_store(tmp_path: Path) -> None:
    store = DirectoryKeyStore(tmp_path / "keys")
    hsm = SoftHsm(bytes(range(32)), store)
    hsm.generate_key("icbc-zpk", KeyUsage.PIN_ENCRYPTION)
    hsm.generate_key("terminal/T0000001/tmk", KeyUsage.KEK)
    assert store.labels() == ["icbc-zpk", "terminal/T0000001/tmk"]
    assert (tmp_path / "keys" / "terminal" / "T0000001" / "tmk.kb").is_file()
    (tmp_path / "outside.kb").write_text("not a key block\n")
    for bad in ("../outside", "terminal/../../outside", "a//b", "/abs", "a/", "x" * 65, "terminal/./tmk"):
        with pytest.raises(HsmInputError, match="key label"):
            hsm.generate_key(bad, KeyUsage.KEK)
        assert store.load(bad) is None
    assert (
        SoftHsm(bytes(range(32)), store).get("terminal/T0000001/tmk").kcv
        == hsm.get("terminal/T0000001/tmk").kcv
    )


def test_a_terminal_hsm_is_its_own_store_and_master_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(KeyStoreError, match="terminal T0000001 has no key store here"):
        bootstrap.terminal_hsm(settings, "T0000001")
    said: list[str] = []
    own = bootstrap.terminal_hsm(settings, "T0000001", create=True, say=said.append)
    folder = tmp_path / "home" / "terminals" / "T0000001"
    assert said and str(folder / "master.key") in said[0]
    assert stat.S_IMODE((folder / "master.key").stat().st_mode) == 0o600
    handle = inject_terminal_master_key(
        SoftHsm(bytes(range(32)), MemoryKeyStore()), own, "terminal/T0000001/tmk"
    )
    reopened = bootstrap.terminal_hsm(settings, "T0000001")
    assert reopened.get("terminal/T0000001/tmk").kcv == handle.kcv
    assert (folder / "keys" / "terminal" / "T0000001" / "tmk.kb").is_file()
    assert bootstrap.terminal_hsm(settings, "T0000001", create=True).labels() == ["terminal/T0000001/tmk"]
    for bad in ("../x", "T000000", "t0000001"):
        with pytest.raises(MalformedCommand, match="terminal_id"):
            bootstrap.terminal_hsm(settings, bad, create=True)
    assert sorted(p.name for p in (tmp_path / "home" / "terminals").iterdir()) == ["T0000001"]
