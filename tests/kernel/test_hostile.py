"""A card that misbehaves — wrong status words, malformed, truncated or duplicated TLV, missing objects,
random bytes, a lying CID — ends the transaction declined or terminated with a reason; nothing escapes
the kernel (EMV Book 3 §10; DESIGN.md §5 "a hostile card")."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.codec import tlv
from citycard.kernel.events import Outcome, OutcomeKind
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import PIN, issuer_stub, new_card, terminal_config, transact

MUTATIONS = ("sw", "truncate", "flip", "random", "duplicate", "empty", "drop_tag")


def _mutate(response: bytes, how: str, data: st.DataObject) -> bytes:
    body, sw = response[:-2], response[-2:]
    if how == "sw":
        return body + data.draw(st.binary(min_size=2, max_size=2))
    if how == "truncate":
        return response[: data.draw(st.integers(0, max(0, len(response) - 1)))]
    if how == "flip" and body:
        i = data.draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes((body[i] ^ data.draw(st.integers(1, 255)),)) + body[i + 1 :] + sw
    if how == "random":
        return data.draw(st.binary(max_size=300))
    if how == "duplicate" and body:
        try:
            top = tlv.decode(body)
        except tlv.TlvError:
            return response
        if len(top) == 1 and top[0].children:
            inner = top[0].value + top[0].children[0].to_bytes()
            return tlv.encode(top[0].tag, inner) + sw
        return body + body + sw
    if how == "drop_tag" and body:
        try:
            top = tlv.decode(body)
        except tlv.TlvError:
            return response
        if len(top) == 1 and top[0].children:
            kids = list(top[0].children)
            kids.pop(data.draw(st.integers(0, len(kids) - 1)))
            return tlv.encode(top[0].tag, b"".join(k.to_bytes() for k in kids)) + sw
    if how == "empty":
        return b""
    return response


class _Proxy:
    """Between the kernel and the card: the response to command number ``target`` is mutated; ``changed``
    says whether the kernel actually saw a response different from the card's."""

    def __init__(self, card, data: st.DataObject) -> None:
        self.inner = card.transmit
        self.target = data.draw(st.integers(0, 20), label="command index")
        self.how = data.draw(st.sampled_from(MUTATIONS), label="mutation")
        self.data = data
        self.count = 0
        self.changed = False
        card.transmit = self

    def __call__(self, apdu: bytes) -> bytes:
        response = self.inner(apdu)
        self.count += 1
        if self.count - 1 != self.target:
            return response
        mutated = _mutate(response, self.how, self.data)
        self.changed = mutated != response
        return mutated


def _hostile(card, data: st.DataObject):
    _Proxy(card, data)
    return card


ODA_FAILED = 0x80 | 0x40 | 0x08 | 0x04  # TVR byte 1: ODA not performed, SDA / DDA / CDA failed


def _check(out: Outcome, card=None, undisturbed: OutcomeKind | None = None) -> None:
    """The kernel answered with an outcome (a kernel bug is raised, and fails the test where it happens);
    every outcome says why; a card that was not disturbed gets the flow's normal outcome; a disturbed one
    is declined or terminated with a reason unless what it changed did not matter — and is never approved
    offline without a successful offline data authentication."""
    assert isinstance(out, Outcome)
    assert out.reason, out
    proxy = getattr(card, "transmit", None)
    if undisturbed is not None and isinstance(proxy, _Proxy) and not proxy.changed:
        assert out.kind is undisturbed, (out.kind, out.reason)
    if out.kind is OutcomeKind.APPROVED_OFFLINE:
        assert not out.tvr[0] & ODA_FAILED, (out.tvr.hex(), out.reason)
    assert out.kind in (
        OutcomeKind.APPROVED_OFFLINE,
        OutcomeKind.APPROVED_ONLINE,
        OutcomeKind.DECLINED_OFFLINE,
        OutcomeKind.DECLINED_ONLINE,
        OutcomeKind.TERMINATED,
        OutcomeKind.TRY_ANOTHER_INTERFACE,
        OutcomeKind.COMPLETED,
    )


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_hostile_contact_ec_purchase(data):
    card = _hostile(new_card("contact"), data)
    out, _ = transact(card, K.PURCHASE, 1250)
    _check(out, card, OutcomeKind.APPROVED_OFFLINE)


@SETTINGS
@given(st.data())
def test_hostile_contact_online_purchase(data):
    card = _hostile(new_card("contact", balance_fen=0), data)
    out, _ = transact(card, K.PURCHASE, 5000, online=issuer_stub().authorize, pin=lambda r: PIN)
    _check(out, card, OutcomeKind.APPROVED_ONLINE)


@SETTINGS
@given(st.data())
def test_hostile_qpboc(data):
    card = _hostile(new_card("contactless"), data)
    out, _ = transact(card, K.PURCHASE, 200, interface="contactless", cfg=terminal_config(terminal_type=0x26))
    _check(out, card, OutcomeKind.APPROVED_OFFLINE)


@SETTINGS
@given(st.data(), st.sampled_from([K.EC_BALANCE, K.TRANSACTION_LOG, K.LOAD_LOG]))
def test_hostile_inquiries(data, kind):
    card = new_card("contact")
    transact(card, K.PURCHASE, 100)
    out, _ = transact(_hostile(card, data), kind)
    _check(out, card, OutcomeKind.COMPLETED)


def _lie(card, command_ins: int, new_cid: int):
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        if apdu[1] == command_ins:
            return response.replace(
                b"\x9f\x27\x01" + response[response.find(b"\x9f\x27\x01") + 3 :][:1],
                b"\x9f\x27\x01" + bytes((new_cid,)),
                1,
            )
        return response

    card.transmit = transmit
    return card


def test_lying_cid_tc_when_aac_requested_terminates():
    from citycard.kernel.config import ExceptionFile

    from .cardlab import NOW

    first, _ = transact(new_card(), K.PURCHASE, 100)
    cfg = terminal_config(exception_file=ExceptionFile(frozenset({first.pan}), NOW, 3600))
    out, apdus = transact(_lie(new_card(), 0xAE, 0x40), K.PURCHASE, 100, cfg=cfg)
    assert [c[2] for p, c, _ in apdus if p == "GENERATE AC 1"] == [0x00]  # the terminal asked for an AAC
    assert out.kind is OutcomeKind.TERMINATED and "TC when AAC was requested" in out.reason
    assert not out.approved and not out.torn  # an AAC request never moves money


def _ctq_of_length(card, length: int):
    """The card's GPO answer (qPBOC, template 77) with its CTQ (9F6C) cut or padded to ``length`` bytes."""
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        if apdu[1] != 0xA8 or response[-2:] != b"\x90\x00":
            return response
        (template,) = tlv.decode(response[:-2])
        kids = [
            tlv.encode(k.tag, (k.value + bytes(length))[:length]) if k.tag == "9F6C" else k.to_bytes()
            for k in template.children or ()
        ]
        assert any(k.tag == "9F6C" for k in template.children or ())
        return tlv.encode(template.tag, b"".join(kids)) + response[-2:]

    card.transmit = transmit
    return card


def test_a_ctq_of_a_wrong_length_terminates_with_its_reason():
    """Found by ``test_hostile_qpboc`` (a flipped length byte left 9F6C empty): the kernel read its first
    byte and ended in "internal error: IndexError"; a CTQ of other than two bytes is malformed card data."""
    for length in (0, 1, 3):
        card = _ctq_of_length(new_card("contactless"), length)
        cfg = terminal_config(terminal_type=0x26)
        out, _ = transact(card, K.PURCHASE, 200, interface="contactless", cfg=cfg)
        assert out.kind is OutcomeKind.TERMINATED, (length, out.kind, out.reason)
        assert out.reason == "qPBOC: CTQ (9F6C) of a wrong length", (length, out.reason)
    out, _ = transact(_ctq_of_length(new_card("contactless"), 2), K.PURCHASE, 200, interface="contactless",
                      cfg=terminal_config(terminal_type=0x26))  # fmt: skip
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason  # the same card, its CTQ of two bytes


def test_card_removed_mid_transaction_is_terminated_and_torn():
    card = new_card()
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == 0xAE:
            raise ConnectionError("card left the field")
        return inner(apdu)

    card.transmit = transmit
    out, _ = transact(card, K.PURCHASE, 100)
    assert out.kind is OutcomeKind.TERMINATED and out.torn and "card removed" in out.reason


@SETTINGS
@given(st.data())
def test_hostile_ec_load(data):
    card = _hostile(new_card("contact", balance_fen=1_000), data)
    out, _ = transact(
        card, K.EC_LOAD, 2_000, online=issuer_stub().authorize, pin=lambda r: PIN, force_online=True
    )
    _check(out, card, OutcomeKind.APPROVED_ONLINE)


_DB_NUMBERS = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_hostile_card_at_the_validator_journal_stays_consistent(tmp_path, data):
    import random

    from citycard.pos.terminal import PosTerminal
    from citycard.sqlite_journal import SqliteJournal

    from .cardlab import NOW

    journal = SqliteJournal(tmp_path / f"j{next(_DB_NUMBERS)}.db", "BUS1")  # one fresh journal per example
    pos = PosTerminal(terminal_config(), journal, clock=lambda: NOW, rng=random.Random(1).randbytes)
    card = _hostile(new_card("contactless"), data)
    result = pos.validate(card.transmit, 200)
    _check(result.outcome, card, OutcomeKind.APPROVED_OFFLINE)
    states = [e.state for e in journal.entries()]
    assert all(s in ("approved", "declined", "refund", "torn", "void") for s in states)
    if "refund" in states:  # the card paid in the GPO (a TC), the terminal declined: uploaded for a refund
        assert result.outcome.kind is OutcomeKind.DECLINED_OFFLINE and result.outcome.cryptogram
        assert [e.state for e in journal.upload_queue()] == ["refund"]
    assert (result.entry is None) == (states == [])
    assert result.approved == (states == ["approved"])
    journal.close()


_CDA_IMAGE: list[bytes] = []


def _cda_card():
    from citycard.chip.card import Card
    from citycard.chip.image import CardImage
    from citycard.chip.personalise import ProductProfile, personalise

    from .cardlab import demo_keys, det_rng

    if not _CDA_IMAGE:
        _CDA_IMAGE.append(
            personalise(ProductProfile(opening_balance_fen=0, cda=True), 42, demo_keys()).to_json()
        )
    card = Card(CardImage.from_json(_CDA_IMAGE[0]), det_rng(4))
    card.power_on("contact")
    return card


@SETTINGS
@given(st.data())
def test_hostile_cda_card(data):
    card = _hostile(_cda_card(), data)
    out, _ = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize, pin=lambda r: PIN)
    _check(out, card, OutcomeKind.APPROVED_ONLINE)
