"""qPBOC cards may leave out the CID (9F27: the cryptogram type is in the CVR of 9F10, JR/T 0025.12) and
the expiry date (5F24: it is in the track 2 equivalent data 57). The outcome, the receipt and the journal
must read them from there: a TC is a TC, and a fare the card paid but the terminal refused is a refund."""

from __future__ import annotations

import random

from citycard.codec import tlv
from citycard.codec.emvbits import TVR_EXPIRED
from citycard.kernel.config import ExceptionFile
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K
from citycard.pos.receipt import render_receipt
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.kernel.cardlab import NOW, new_card, terminal_config, transact


def _without(card, ins: int, *tags: str):
    """The card's responses to command ``ins`` with ``tags`` removed from their template."""
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        if apdu[1] != ins or response[-2:] != b"\x90\x00":
            return response
        (top,) = tlv.decode(response[:-2])
        assert top.children is not None
        kept = b"".join(c.to_bytes() for c in top.children if c.tag not in tags)
        return tlv.encode(top.tag, kept) + response[-2:]

    card.transmit = transmit
    return card


def _pos(tmp_path, **cfg) -> PosTerminal:
    rnd = random.Random(5)
    journal = SqliteJournal(tmp_path / "journal.db", "BUS00001")
    return PosTerminal(terminal_config(**cfg), journal, clock=lambda: NOW, rng=rnd.randbytes)


def test_qpboc_without_9f27_takes_the_cid_from_the_cvr_and_the_receipt_says_tc(tmp_path):
    pos = _pos(tmp_path)
    card = _without(new_card("contactless", balance_fen=1_000), 0xA8, "9F27")
    result = pos.validate(card.transmit, 200)
    assert result.approved and "9F27" not in result.outcome.data
    assert result.outcome.cid == 0x40
    receipt = render_receipt(pos.config, result.outcome, result.entry, amount_fen=200)
    assert f"TC{result.outcome.cryptogram.hex().upper()}" in receipt.replace(" ", "")
    assert "AAC" not in receipt


def test_qpboc_without_9f27_paid_then_denied_is_journaled_refund(tmp_path):
    probe = transact(new_card("contactless"), K.PURCHASE, 200, interface="contactless")[0]
    deny = ExceptionFile(frozenset({probe.pan}), NOW, 3600)
    pos = _pos(tmp_path, exception_file=deny)
    card = _without(new_card("contactless", balance_fen=1_000), 0xA8, "9F27")
    result = pos.validate(card.transmit, 200)
    assert not result.approved and "exception file" in result.outcome.reason
    balance = transact(card, K.EC_BALANCE, interface="contactless")[0].ec_balance_fen
    assert balance == 800  # the card paid in the GPO
    assert result.entry is not None and result.entry.state == "refund"
    assert [e.txn_id for e in pos.journal.upload_queue()] == [result.entry.txn_id]


def test_qpboc_without_5f24_takes_the_expiry_from_track2(tmp_path):
    card = _without(new_card("contactless", expiry="251231"), 0xB2, "5F24")
    out, _ = transact(card, K.PURCHASE, 200, interface="contactless")
    assert "5F24" not in out.data and out.expiry == "2512"
    assert out.kind is OutcomeKind.DECLINED_OFFLINE and out.reason.startswith("expired card")
    assert TVR_EXPIRED[1] & out.tvr[TVR_EXPIRED[0]]
