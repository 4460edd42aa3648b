"""Card image document, transactions and journal; atomic files; demo key file."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard import files
from citycard.chip.card import Card
from citycard.chip.image import CardImage, ImageError, PowerLoss, cell_key
from citycard.demokeys import DemoKeyError, DemoKeys

AID = "A000000333010101"


def test_round_trip_is_byte_exact(registered_image: bytes) -> None:
    image = CardImage.from_json(registered_image)
    assert image.to_json() == registered_image
    doc = json.loads(registered_image)
    assert doc["format"] == "citycard-card-image" and doc["version"] == 1


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d["nvm"].pop("pin.tries"), "nvm pin.tries"),
        (lambda d: d["nvm"].update({"card.blocked": 1}), "nvm card.blocked"),
        (lambda d: d["nvm"].update({"pin.tries": True}), "nvm pin.tries"),
        (lambda d: d["nvm"].update({"x": {"a": 1}}), "nvm x"),
        (lambda d: d["applications"][0]["keys"].update(udk_ac="00"), "application A000000333010101 udk_ac"),
        (lambda d: d["applications"][0]["keys"]["icc_rsa"].update(p="3"), "icc_rsa"),
        (lambda d: d["applications"][0]["data"].pop("5A"), "application A000000333010101"),
        (lambda d: d.update(applications=[]), "applications"),
        (lambda d: d["nvm"].update({"A000000333010101.txn_log": ["ZZ"]}), "nvm A000000333010101.txn_log"),
        (
            lambda d: d["nvm"].update({"A000000333010101.txn_log": ["00" * 44]}),
            "nvm A000000333010101.txn_log",
        ),
        (
            lambda d: d["nvm"].update({"A000000333010101.load_log": ["00" * 44] * 11}),
            "nvm A000000333010101.load_log",
        ),
        # impossible values: each is refused on load, with the field named
        (lambda d: d["nvm"].update({f"{AID}.ec_balance": -1}), f"nvm {AID}.ec_balance"),
        (lambda d: d["nvm"].update({f"{AID}.ec_limit": 10**12}), f"nvm {AID}.ec_limit"),
        (lambda d: d["nvm"].update({f"{AID}.atc": -5}), f"nvm {AID}.atc"),
        (lambda d: d["nvm"].update({f"{AID}.atc": 0x10000}), f"nvm {AID}.atc"),
        (lambda d: d["nvm"].update({f"{AID}.last_online_atc": 9}), f"nvm {AID}.last_online_atc"),
        (lambda d: d["nvm"].update({"pin.tries": -1}), "nvm pin.tries"),
        (lambda d: d["nvm"].update({"pin.tries": 4}), "nvm pin.tries"),
        (lambda d: d["nvm"].update({"pin.value": "12ab"}), "nvm pin.value"),
        (lambda d: d["nvm"].update({"pin.value": 1234}), "nvm pin.value"),
        (lambda d: d["nvm"].update({"spare": 1}), "nvm spare"),
        (lambda d: d.update(pin_try_limit=0), "pin_try_limit"),
        (lambda d: d.update(pin_try_limit="3"), "pin_try_limit"),
        (lambda d: d["journal"].update(entries=[["nowhere", 1]], committed=True), "journal entry 0"),
        (
            lambda d: d["journal"].update(entries=[[f"{AID}.ec_balance", "lots"]], committed=True),
            f"journal entry 0 ({AID}.ec_balance)",
        ),
        (lambda d: d["journal"].update(entries=[["pin.tries", -1]]), "journal entry 0 (pin.tries)"),
        (lambda d: d["journal"].update(entries=[["pin.tries"]]), "journal entry 0"),
        (lambda d: d["journal"].update(committed="yes"), "journal committed"),
        (lambda d: d["applications"][0].update(contactless="false"), f"application {AID} contactless"),
        (lambda d: d["applications"][0].update(priority=1.5), f"application {AID} priority"),
        (lambda d: d["applications"][0].update(priority=300), f"application {AID} priority"),
        (lambda d: d["applications"][0].update(label=""), f"application {AID} label"),
        (lambda d: d["applications"][0]["data"].update({"5F34": "0102"}), f"application {AID} data 5F34"),
        (lambda d: d["applications"][0]["data"].update({"ZZ": "01"}), f"application {AID} data ZZ"),
        (lambda d: d["applications"][0]["records"].update({"11": [["5A"]]}), f"application {AID} records 11"),
        (lambda d: d["applications"].append(d["applications"][0]), "applications"),
    ],
)
def test_invalid_documents(registered_image: bytes, mutate: Any, where: str) -> None:
    doc = json.loads(registered_image)
    mutate(doc)
    with pytest.raises(ImageError) as info:
        CardImage.from_json(json.dumps(doc).encode())
    assert info.value.where == where


def test_not_json() -> None:
    with pytest.raises(ImageError):
        CardImage.from_json(b"\xff{")
    with pytest.raises(ImageError):
        CardImage.from_json(b"[1, 2]")


def test_transaction_stages_until_commit(image: CardImage) -> None:
    key = cell_key("A000000333010101", "ec_balance")
    txn = image.begin()
    txn.put(key, 1)
    assert txn.get_int(key) == 1 and image.get_int(key) == 10_000
    txn.commit()
    assert image.get_int(key) == 1 and not image.journal


def test_fault_points_and_recovery(image: CardImage) -> None:
    a, b = cell_key("A000000333010101", "ec_balance"), "pin.tries"
    labels: list[str] = []

    def fault(label: str) -> None:
        labels.append(label)
        if label == f"write {b}":
            raise PowerLoss(label)

    txn = image.begin(fault)
    txn.put(a, 5)
    txn.put(b, 1)
    with pytest.raises(PowerLoss):
        txn.commit()
    assert labels == [f"journal {a}", f"journal {b}", "journal commit", f"write {a}", f"write {b}"]
    assert image.get_int(a) == 5 and image.get_int(b) == 3  # torn: a mix
    image.recover()
    assert image.get_int(a) == 5 and image.get_int(b) == 1 and not image.journal


def test_uncommitted_journal_is_dropped(image: CardImage) -> None:
    key = cell_key("A000000333010101", "atc")

    def fault(label: str) -> None:
        if label == "journal commit":
            raise PowerLoss(label)

    txn = image.begin(fault)
    txn.put(key, 9)
    with pytest.raises(PowerLoss):
        txn.commit()
    assert image.journal
    image.recover()
    assert image.get_int(key) == 0 and not image.journal


def test_atomic_write_and_card_files(tmp_path: Path, image: CardImage) -> None:
    path = tmp_path / "card.json"
    files.save_card(path, image)
    assert files.load_card(path).to_json() == image.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_crash_mid_save_keeps_the_old_file(
    tmp_path: Path, image: CardImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "card.json"
    files.save_card(path, image)
    old = path.read_bytes()
    image.nvm["pin.tries"] = 1

    def crash(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        files.save_card(path, image)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]  # no temp file left
    monkeypatch.undo()

    real_fsync = os.fsync
    calls: list[int] = []

    def crash_fsync(fd: int) -> None:
        calls.append(fd)
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash_fsync)
    with pytest.raises(OSError):
        files.save_card(path, image)
    assert calls and path.read_bytes() == old
    monkeypatch.setattr(os, "fsync", real_fsync)
    files.save_card(path, image)
    assert files.load_card(path).nvm["pin.tries"] == 1


def test_demo_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "demo-keys.json"
    keys = DemoKeys.load_or_create(path)
    assert path.exists()
    doc = json.loads(path.read_bytes())
    assert "DEMO ONLY" in doc["warning"] and doc["ca"]["index"] == "F1"
    again = DemoKeys.load_or_create(path)
    assert again.imk_ac == keys.imk_ac and again.issuer_key.n == keys.issuer_key.n
    assert again.ca_public_key() == keys.ca_public_key()
    path.write_bytes(b'{"format": "citycard-demo-keys", "version": 1}')
    with pytest.raises(DemoKeyError):
        DemoKeys.load_or_create(path)


def test_repr_shows_no_secret(image: CardImage) -> None:
    app = image.applications[0]
    text = repr(image) + repr(app)
    assert app.udk_ac.hex() not in text.lower() and app.udk_ac.hex().upper() not in text
    assert "pin.value" not in text and "nvm" not in text
    assert "A000000333010101" in repr(image)
    pan = app.data["5A"].hex().upper().rstrip("F")
    assert pan not in text and app.data["57"].hex().upper()[:16] not in text.upper()
    assert b"ZHANG" not in text.encode() and repr(app).endswith(f"PAN {pan[:6]}******{pan[-4:]})")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_from_json_any_bytes(data: bytes) -> None:
    with pytest.raises(ImageError):
        CardImage.from_json(data)


_NODES = [
    "applications",
    0,
    "keys",
    "data",
    "records",
    "nvm",
    "journal",
    "icc_rsa",
    "entries",
    "aid",
    "udk_ac",
    "2",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(_NODES), min_size=1, max_size=4), value=json_values)
def test_from_json_hostile_documents(registered_image: bytes, path: list[Any], value: Any) -> None:
    """A valid document with one node replaced by arbitrary JSON: either valid or ImageError."""
    doc = json.loads(registered_image)
    node = doc
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        return
    with contextlib.suppress(ImageError):
        CardImage.from_json(json.dumps(doc).encode())


# -- every field validated on load: a mutated image loads and works, or is one ImageError -----------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key in sorted(node):
            out += _paths(node[key], (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node[:3]):
            out += _paths(child, (*prefix, index))
    return out


_EDGE_VALUES = st.sampled_from(
    [-1, 0, 1, 3, 15, 16, 0xFFFF, 0x10000, 10**12 - 1, 10**12, 2**64, True, False, None, "", "00", "1234",
     "A000000333010101.atc", "pin.tries", [], ["00"], {}, 1.5]
)  # fmt: skip


def _exercise(image: CardImage) -> list[BaseException]:
    """Power the card on (journal recovery) and run a contact and a contactless purchase on it with the
    kernel; the exceptions the card raised (the runner would have taken them for a removed card)."""
    from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
    from citycard.kernel.runner import run

    from tests.kernel.cardlab import NOW, det_rng, terminal_config

    raised: list[BaseException] = []
    card = Card(image, det_rng(3))
    for interface in ("contact", "contactless"):
        card.power_on(interface)

        def transmit(command: bytes) -> bytes:
            try:
                return card.transmit(command)
            except BaseException as exc:
                raised.append(exc)
                raise

        txn = Transaction(TransactionKind.PURCHASE, NOW, 100, interface=interface)
        run(Kernel(terminal_config(), txn, det_rng(4)), transmit)
    return raised


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_image_loads_and_works_or_is_an_image_error(registered_image: bytes, data: Any) -> None:
    """Any one field replaced (by an edge value or arbitrary JSON), and maybe a committed journal entry
    added: the loader either refuses it with ImageError, or the image powers on, runs purchases without
    the card raising, and is saved and read back."""
    doc = json.loads(registered_image)
    path = data.draw(st.sampled_from(_paths(doc)))
    value = data.draw(_EDGE_VALUES | json_values)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if data.draw(st.booleans()):
        cells = sorted(doc["nvm"]) if isinstance(doc["nvm"], dict) else []
        key = data.draw(st.sampled_from([*cells, "x.y"]))
        doc["journal"] = {"committed": True, "entries": [[key, data.draw(_EDGE_VALUES)]]}
    try:
        image = CardImage.from_json(json.dumps(doc).encode())
    except ImageError:
        return
    assert _exercise(image) == []
    CardImage.from_json(image.to_json())


def test_committed_journal_with_a_wrong_type_is_refused_not_rolled_forward(registered_image: bytes) -> None:
    """Such an image used to load, then power-on rolled the journal forward into the cells and the card
    failed with AssertionError on its next command, leaving an image that no longer loaded."""
    doc = json.loads(registered_image)
    doc["journal"] = {"committed": True, "entries": [[f"{AID}.ec_balance", "9999"]]}
    with pytest.raises(ImageError) as info:
        CardImage.from_json(json.dumps(doc).encode())
    assert info.value.where == f"journal entry 0 ({AID}.ec_balance)"
