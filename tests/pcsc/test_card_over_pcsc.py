"""An emulated citizen card served into the Virtual PCD reader and read through pyscard exactly as a
terminal would (pcscd + vsmartcard-vpcd; CI installs and starts them, so these run there, never skip)."""

from __future__ import annotations

import os

import pytest

from citycard.chip.personalise import ProductProfile, personalise
from citycard.codec.dol import build_dol_data
from citycard.codec.money import amount_from_bcd
from citycard.codec.tlv import decode_dict
from citycard.demokeys import DemoKeys
from citycard.files import save_card
from citycard.pcsc.vpcd import CardFileBridge

from tests.pcsc.pcsc_helpers import connect_reader, require_vpcd, served

pytestmark = pytest.mark.pcsc

PPSE = b"2PAY.SYS.DDF01"
PSE = b"1PAY.SYS.DDF01"


@pytest.fixture(scope="module")
def keys() -> DemoKeys:
    return DemoKeys.generate()


@pytest.fixture
def card_file(tmp_path, keys):
    profile = ProductProfile(opening_balance_fen=10_000, registered=True, holder_name="ZHANG/SAN")
    path = tmp_path / "card.json"
    save_card(path, personalise(profile, 42, keys))
    return path


def terminal_data(amount_fen: int) -> dict[str, bytes]:
    return {
        "9F66": bytes.fromhex("40000000"),  # TTQ byte 1 b7: full PBOC over contactless (JR/T 0025.12)
        "9F7A": b"\x01",  # EC terminal support indicator
        "9F02": bytes.fromhex(f"{amount_fen:012d}"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes(5),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261125"),
        "9C": b"\x00",
        "9F37": os.urandom(4),
        "9F21": bytes.fromhex("101500"),
        "9F4E": b"CITYCARD TEST".ljust(20, b" "),
    }


def send(conn, apdu: bytes) -> tuple[bytes, int]:
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def select(conn, name: bytes) -> tuple[bytes, int]:
    return send(conn, bytes((0x00, 0xA4, 0x04, 0x00, len(name))) + name + b"\x00")


def read_afl(conn, afl: bytes) -> dict[str, bytes]:
    """READ RECORD every record the AFL lists; returns the data objects found."""
    found: dict[str, bytes] = {}
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for record in range(first, last + 1):
            data, sw = send(conn, bytes((0x00, 0xB2, record, (sfi << 3) | 4, 0x00)))
            assert sw == 0x9000, f"READ RECORD SFI {sfi} record {record}: {sw:04X}"
            assert data[0] == 0x70
            found.update(decode_dict(data))
    return found


def test_contactless_terminal_reads_card_through_pcsc(card_file) -> None:
    """SELECT PPSE, SELECT AID, GPO, READ RECORD, GENERATE AC — an EC purchase of 12.50 through PC/SC."""
    require_vpcd()
    bridge = CardFileBridge(card_file, interface="contactless")
    with served(bridge, after_command=bridge.persist):
        conn = connect_reader()
        fci, sw = select(conn, PPSE)
        assert sw == 0x9000
        aid = decode_dict(fci, duplicates=True)["4F"]
        assert aid == bytes.fromhex("A000000333010101")

        fci, sw = select(conn, aid)
        assert sw == 0x9000
        pdol = decode_dict(fci)["9F38"]
        data = terminal_data(1250)
        pdol_data = build_dol_data(pdol, data)
        gpo, sw = send(
            conn,
            b"\x80\xa8\x00\x00" + bytes((len(pdol_data) + 2, 0x83, len(pdol_data))) + pdol_data + b"\x00",
        )
        assert sw == 0x9000, f"GPO {sw:04X}"
        assert gpo[0] == 0x80  # format 1: AIP ‖ AFL on the full (contact-style) path
        afl = gpo[4:]
        records = read_afl(conn, afl)
        assert records["5F20"].rstrip(b" ") == b"ZHANG/SAN"
        assert records["9F74"] == b"ECC001"  # the card took the EC path

        cdol1_data = build_dol_data(records["8C"], data)
        ac, sw = send(conn, b"\x80\xae\x40\x00" + bytes((len(cdol1_data),)) + cdol1_data + b"\x00")
        assert sw == 0x9000, f"GENERATE AC {sw:04X}"
        objects = decode_dict(ac) if ac[0] == 0x77 else {}
        cid = objects["9F27"][0] if objects else ac[2]
        assert cid & 0xC0 == 0x40, f"expected a TC, CID {cid:02X}"

        balance, sw = send(conn, bytes.fromhex("80CA9F7900"))
        assert sw == 0x9000
        assert amount_from_bcd(decode_dict(balance)["9F79"]) == 10_000 - 1250
        conn.disconnect()
    # the debit was persisted to the card file by the bridge, not only held in memory
    again = CardFileBridge(card_file)
    again.power_on()
    select_fci = again.transmit(bytes((0x00, 0xA4, 0x04, 0x00, 8)) + aid + b"\x00")
    assert select_fci[-2:] == b"\x90\x00"
    answer = again.transmit(bytes.fromhex("80CA9F7900"))
    assert amount_from_bcd(decode_dict(answer[:-2])["9F79"]) == 8_750


def test_contact_pse_directory_through_pcsc(card_file) -> None:
    """Over the contact interface the terminal finds the application through the PSE directory."""
    require_vpcd()
    bridge = CardFileBridge(card_file, interface="contact")
    with served(bridge, after_command=bridge.persist):
        conn = connect_reader()
        fci, sw = select(conn, PSE)
        assert sw == 0x9000
        sfi = decode_dict(fci)["88"][0]
        record, sw = send(conn, bytes((0x00, 0xB2, 0x01, (sfi << 3) | 4, 0x00)))
        assert sw == 0x9000
        assert decode_dict(record)["4F"] == bytes.fromhex("A000000333010101")
        _, sw = send(conn, bytes((0x00, 0xB2, 0x02, (sfi << 3) | 4, 0x00)))
        assert sw == 0x6A83
        _, sw = select(conn, PPSE)
        assert sw == 0x6A82  # PPSE is a contactless-only directory
        conn.disconnect()
