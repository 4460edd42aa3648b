"""A concession written by issuer script: UPDATE RECORD of the transit file's record 1 under secure
messaging, delivered with the answer to an online transaction (after the ARQC, as PUT DATA is); a script
with a wrong MAC is refused and the record is unchanged."""

from __future__ import annotations

import datetime as dt

from citycard.chip.image import cell_key
from citycard.chip.pboc import AID_DEBIT
from citycard.codec import tlv
from citycard.crypto.cryptograms import arpc_method1, script_command
from citycard.crypto.derivation import derive_icc_mk_a, derive_pboc_session_key
from citycard.kernel.events import OnlineRequest, OnlineResponse
from citycard.kernel.kernel import TransactionKind
from citycard.transit import Category, Concession

from tests.kernel.cardlab import NOW, demo_keys, new_card, transact

TRANSIT = cell_key(AID_DEBIT, "transit")
UPDATE_CONCESSION = bytes.fromhex("84DC01AC")  # UPDATE RECORD, record 1, SFI 21 (P2 = 21 << 3 | 4)


def _issuer(concession: bytes, *, forge: bool = False):
    keys = demo_keys()

    def online(request: OnlineRequest) -> OnlineResponse:
        values = tlv.decode_dict(request.field55)
        atc, arqc = int.from_bytes(values["9F36"], "big"), values["9F26"]
        sk_ac = derive_pboc_session_key(derive_icc_mk_a(keys.imk_ac, request.pan, request.psn or "00"), atc)
        sk_mac = derive_pboc_session_key(derive_icc_mk_a(keys.imk_mac, request.pan, request.psn or "00"), atc)
        command = script_command(sk_mac, UPDATE_CONCESSION, concession, atc, arqc)
        if forge:
            command = command[:-1] + bytes((command[-1] ^ 1,))
        scripts = tlv.encode("71", tlv.encode("9F18", b"\x00\x00\x00\x01") + tlv.encode("86", command))
        return OnlineResponse(
            "00", issuer_authentication_data=arpc_method1(sk_ac, arqc, b"00") + b"00", scripts=scripts
        )

    return online


def test_the_issuer_writes_a_concession_by_script():
    card = new_card("contact", transit=True)
    student = Concession(Category.STUDENT, dt.date(2027, 6, 30)).encode()
    out, _ = transact(
        card,
        TransactionKind.PURCHASE,
        100,
        online=_issuer(student),
        force_online=True,
        pin=lambda _: "123456",
    )
    assert out.approved, out.reason
    assert card.image.nvm[TRANSIT][0] == student.hex().upper()
    assert Concession.decode(bytes.fromhex(card.image.nvm[TRANSIT][0])).applies(NOW.date())


def test_a_forged_script_changes_nothing():
    card = new_card("contact", transit=True)
    before = card.image.nvm[TRANSIT]
    elderly = Concession(Category.ELDERLY, dt.date(2099, 1, 1)).encode()
    out, _ = transact(
        card,
        TransactionKind.PURCHASE,
        100,
        online=_issuer(elderly, forge=True),
        force_online=True,
        pin=lambda _: "123456",
    )
    assert card.image.nvm[TRANSIT] == before
    assert out.script_results[:1] == b"\x11"  # 9F5B: failed (1), the first command (1)
