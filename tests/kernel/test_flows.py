"""Every PBOC flow of the kernel against the card emulator, APDU for APDU (docs/card-profile.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from citycard.codec import tlv
from citycard.codec.emvbits import (
    TSI_ODA,
    TVR_CARD_ON_EXCEPTION_FILE,
    TVR_FLOOR_LIMIT,
    TVR_ONLINE_PIN_ENTERED,
    TVR_PIN_TRY_LIMIT,
)
from citycard.kernel.config import ExceptionFile
from citycard.kernel.events import OutcomeKind, PinEntry, RequestPin
from citycard.kernel.kernel import TransactionKind as K
from citycard.kernel.tvr import Bits

from .cardlab import NOW, PIN, issuer_stub, new_card, terminal_config, transact


def _has(bits: bytes, flag) -> bool:
    return bool(bits[flag[0]] & flag[1])


def _get_balance(card) -> int:
    out, _ = transact(card, K.EC_BALANCE)
    assert out.kind is OutcomeKind.COMPLETED, out.reason
    return out.ec_balance_fen


def test_contact_ec_offline_purchase_with_dda():
    card = new_card("contact", balance_fen=50_000)
    out, apdus = transact(card, K.PURCHASE, 1250)
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason
    assert out.ec and out.tvr == bytes(5) and _has(out.tsi, TSI_ODA)
    assert "INTERNAL AUTHENTICATE" in [p for p, _, _ in apdus]
    assert out.cid == 0x40 and len(out.cryptogram) == 8
    assert out.ec_balance_fen == 50_000 - 1250 == _get_balance(card)
    assert not [p for p, _, _ in apdus if p == "VERIFY"]  # EC: no cardholder verification


def test_contact_standard_purchase_offline_pin_then_online_approved():
    card = new_card("contact", balance_fen=1_000)
    asked: list[RequestPin] = []

    def pin(req):
        asked.append(req)
        return PIN

    stub = issuer_stub()
    out, apdus = transact(card, K.PURCHASE, 5_000, online=stub.authorize, pin=pin)
    assert out.kind is OutcomeKind.APPROVED_ONLINE, out.reason
    assert [r.kind for r in asked] == ["offline_plaintext"]
    assert out.data["9F34"] == bytes.fromhex("410302")  # offline plaintext PIN, successful
    assert _has(out.tvr, TVR_FLOOR_LIMIT) and not out.ec
    purposes = [p for p, _, _ in apdus]
    assert purposes.index("GENERATE AC 1") < purposes.index("GENERATE AC 2")
    assert len(stub.requests) == 1 and tlv.decode_dict(stub.requests[0].field55)["9F27"] == b"\x80"
    assert _get_balance(card) == 1_000  # standard debit/credit leaves the EC balance alone


def test_wrong_pin_until_blocked_then_online_pin():
    card = new_card("contact", balance_fen=0)
    asked = []

    def pin(req):
        asked.append((req.kind, req.tries_left, req.wrong_pin))
        return f"000{len(asked)}" if req.kind == "offline_plaintext" else PIN  # three different wrong PINs

    out, _ = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize, pin=pin)
    offline = [
        ("offline_plaintext", 3, False),
        ("offline_plaintext", 2, True),
        ("offline_plaintext", 1, True),
    ]
    assert asked == [*offline, ("online", None, False)]
    assert _has(out.tvr, TVR_PIN_TRY_LIMIT) and _has(out.tvr, TVR_ONLINE_PIN_ENTERED)
    assert out.data["9F34"][:2] == bytes.fromhex("4203")


def test_a_rejected_pin_is_never_sent_again():
    """A PIN pad that offers the same wrong value again does not burn the card's tries with it."""
    card = new_card("contact", balance_fen=0)
    out, apdus = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize, pin=lambda r: "0000")
    assert [p for p, _, _ in apdus].count("VERIFY") == 1
    assert card.image.nvm["pin.tries"] == 2 and not _has(out.tvr, TVR_PIN_TRY_LIMIT)


def test_pin_entry_cancelled_after_a_wrong_pin_ends_the_transaction():
    card = new_card("contact", balance_fen=0)

    def pin(req):
        return PinEntry(None, cancel=True) if req.wrong_pin else "0000"

    stub = issuer_stub()
    out, apdus = transact(card, K.PURCHASE, 5_000, online=stub.authorize, pin=pin)
    assert out.kind is OutcomeKind.TERMINATED and "after a wrong PIN (2 PIN tries left)" in out.reason
    assert [p for p, _, _ in apdus].count("VERIFY") == 1 and not stub.requests
    assert "GENERATE AC 1" not in [p for p, _, _ in apdus]


def test_online_pin_is_checked_by_the_issuer_stub():
    """The stub deciphers the ISO 9564 format-0 block under the terminal PIN key and compares the PIN."""
    outcomes = {}
    for entered in (PIN, "654321"):
        card = new_card("contact", balance_fen=0)
        stub = issuer_stub()

        def pin(req, entered=entered):
            return "0000" if req.kind == "offline_plaintext" else entered

        out, _ = transact(card, K.PURCHASE, 5_000, online=stub.authorize, pin=pin)
        assert stub.requests[0].pin_block is not None and len(stub.requests[0].pin_block) == 8
        outcomes[entered] = out
    assert outcomes[PIN].kind is OutcomeKind.APPROVED_ONLINE, outcomes[PIN].reason
    wrong = outcomes["654321"]
    assert wrong.kind is OutcomeKind.DECLINED_ONLINE and wrong.data["8A"] == b"55", wrong.reason


def test_issuer_decline_is_declined_online():
    card = new_card("contact", balance_fen=0)
    stub = issuer_stub()
    pan = card.image  # placeholder to keep the card; PAN comes from the first request
    out, _ = transact(card, K.PURCHASE, 5_000, online=stub.authorize, pin=lambda r: PIN)
    assert out.approved
    stub.decline_codes[stub.requests[0].pan] = "51"
    card2 = new_card("contact", balance_fen=0)
    out2, _ = transact(card2, K.PURCHASE, 5_000, online=stub.authorize, pin=lambda r: PIN)
    assert out2.kind is OutcomeKind.DECLINED_ONLINE and "51" in out2.reason
    assert out2.cid == 0x00
    del pan


def test_unable_to_go_online_takes_default_action():
    card = new_card("contact", balance_fen=0)
    out, _ = transact(card, K.PURCHASE, 5_000, pin=lambda r: PIN)
    assert out.kind is OutcomeKind.DECLINED_OFFLINE
    assert out.data["8A"] == b"Z3" and "Z3" in out.reason


def test_ec_balance_inquiry_and_limits():
    card = new_card("contact", balance_fen=12_345)
    out, _ = transact(card, K.EC_BALANCE)
    assert out.kind is OutcomeKind.COMPLETED and out.ec_balance_fen == 12_345
    assert out.data["9F77"] == bytes.fromhex("000000100000")


def test_transaction_log_after_purchases():
    card = new_card("contact", balance_fen=50_000)
    for amount in (100, 250):
        assert transact(card, K.PURCHASE, amount)[0].approved
    out, _ = transact(card, K.TRANSACTION_LOG)
    assert out.kind is OutcomeKind.COMPLETED
    amounts = [int(e.get("9F02").hex()) for e in out.logs]
    assert amounts == [250, 100]  # most recent first
    assert out.logs[0].get("9F4E").rstrip(b"\x00") == b"CITYCARD DEMO SHOP"


def test_ec_load_online_with_put_data_script_then_load_log():
    card = new_card("contact", balance_fen=1_000)
    stub = issuer_stub()
    out, apdus = transact(
        card, K.EC_LOAD, 20_000, online=stub.authorize, pin=lambda r: PIN, force_online=True
    )
    assert out.kind is OutcomeKind.APPROVED_ONLINE, out.reason
    assert out.script_results[:1] == b"\x20"  # script 1 performed successfully
    assert out.ec_balance_fen == 21_000 == _get_balance(card)
    assert any(c[:2] == bytes.fromhex("84DA") for _, c, _ in apdus)
    log, _ = transact(card, K.LOAD_LOG)
    assert log.kind is OutcomeKind.COMPLETED and len(log.logs) == 1
    assert int(log.logs[0].get("BEFORE").hex()) == 1_000 and int(log.logs[0].get("AFTER").hex()) == 21_000


def test_exception_file_declines():
    card = new_card("contact", balance_fen=50_000)
    out, _ = transact(card, K.EC_BALANCE)
    pan = out.pan or None
    # the PAN is read in the purchase; put it on the deny list
    first, _ = transact(new_card("contact", balance_fen=50_000), K.PURCHASE, 100)
    cfg = terminal_config(exception_file=ExceptionFile(frozenset({first.pan}), NOW, 3600))
    out, _ = transact(new_card("contact", balance_fen=50_000), K.PURCHASE, 100, cfg=cfg)
    assert _has(out.tvr, TVR_CARD_ON_EXCEPTION_FILE)
    assert out.kind is OutcomeKind.DECLINED_OFFLINE  # IAC-denial 0010000000
    del pan


def test_qpboc_offline_fare_with_fdda():
    card = new_card("contactless", balance_fen=5_000)
    out, apdus = transact(card, K.PURCHASE, 200, interface="contactless")
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason
    assert out.ec_balance_fen == 4_800 and _has(out.tsi, TSI_ODA) and out.tvr == bytes(5)
    assert "GENERATE AC 1" not in [p for p, _, _ in apdus]


def test_qpboc_over_contactless_limit_tries_another_interface():
    card = new_card("contactless")
    out, apdus = transact(card, K.PURCHASE, 200_000, interface="contactless")
    assert out.kind is OutcomeKind.TRY_ANOTHER_INTERFACE and not apdus


def test_qpboc_over_floor_goes_online():
    card = new_card("contactless", balance_fen=100_000)
    cfg = terminal_config(ec_terminal_limit_fen=1_000)
    stub = issuer_stub()
    out, _ = transact(
        card, K.PURCHASE, 40_000, interface="contactless", cfg=cfg, online=stub.authorize, pin=lambda r: PIN
    )
    assert out.kind is OutcomeKind.APPROVED_ONLINE, out.reason
    assert stub.requests and stub.requests[0].pin_block is not None


def test_qpboc_insufficient_balance_on_offline_reader_declines():
    card = new_card("contactless", balance_fen=100)
    cfg = terminal_config(terminal_type=0x26)
    out, _ = transact(card, K.PURCHASE, 200, interface="contactless", cfg=cfg)
    assert out.kind is OutcomeKind.DECLINED_OFFLINE


def test_expired_card_sets_tvr_and_declines_qpboc():
    later = dt.datetime(2032, 1, 5, 8, 0, 0)
    card = new_card("contactless")
    out, _ = transact(card, K.PURCHASE, 200, interface="contactless", now=later)
    assert out.kind is OutcomeKind.DECLINED_OFFLINE and "expired" in out.reason


def _with_ctq(card, ctq: int):
    """Our card sends CTQ 20 00 (online if ODA fails); this proxy shows the kernel other CTQ bits in the
    GPO's 9F6C (the signed 9F69 keeps the card's own, so fDDA still verifies)."""
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        at = response.find(bytes.fromhex("9F6C02"))
        if apdu[:2] == b"\x80\xa8" and at >= 0:
            response = response[: at + 3] + bytes((ctq, 0)) + response[at + 5 :]
        return response

    card.transmit = transmit
    return card


def test_qpboc_ctq_signature_required_prints_a_signature_line():
    from citycard.pos.receipt import render_receipt

    out, _ = transact(_with_ctq(new_card("contactless"), 0x60), K.PURCHASE, 200, interface="contactless")
    assert out.kind is OutcomeKind.APPROVED_OFFLINE and out.data["9F34"] == bytes.fromhex("1E0000")
    assert "SIGNATURE" in render_receipt(terminal_config(), out, None, amount_fen=200)
    plain, _ = transact(new_card("contactless"), K.PURCHASE, 200, interface="contactless")
    assert plain.approved and "SIGNATURE" not in render_receipt(
        terminal_config(), plain, None, amount_fen=200
    )


def test_qpboc_ctq_go_online_if_the_application_expired():
    later = dt.datetime(2032, 1, 5, 8, 0, 0)
    stub = issuer_stub()
    out, _ = transact(_with_ctq(new_card("contactless"), 0x28), K.PURCHASE, 200, interface="contactless",
                      now=later, online=stub.authorize)  # fmt: skip
    assert out.kind is OutcomeKind.APPROVED_ONLINE and len(stub.requests) == 1, out.reason
    assert out.tvr[1] & 0x40  # TVR expired application
    validator = terminal_config(terminal_type=0x26)  # offline only: nowhere to go, declined
    out, _ = transact(_with_ctq(new_card("contactless"), 0x28), K.PURCHASE, 200, interface="contactless",
                      now=later, cfg=validator)  # fmt: skip
    assert out.kind is OutcomeKind.DECLINED_OFFLINE and "expired" in out.reason


def test_bits_helper():
    b = Bits(5)
    b.set(TVR_FLOOR_LIMIT)
    assert TVR_FLOOR_LIMIT in b and b.value() == bytes.fromhex("0000008000")


def test_wrong_arpc_card_declines_after_issuer_approval():
    from dataclasses import replace

    stub = issuer_stub()

    def forged(request):
        answer = stub.authorize(request)
        arpc = bytes(b ^ 0xFF for b in answer.issuer_authentication_data[:8])
        return replace(answer, issuer_authentication_data=arpc + answer.issuer_authentication_data[8:])

    out, _ = transact(new_card("contact", balance_fen=0), K.PURCHASE, 5_000, online=forged, pin=lambda r: PIN)
    assert out.kind is OutcomeKind.DECLINED_ONLINE and "after issuer approval" in out.reason
    assert out.tsi[0] & 0x10  # issuer authentication performed (by the card, 91 in CDOL2)


def test_ec_load_script_after_second_generate_ac():
    from dataclasses import replace

    from citycard.codec import tlv as tlvlib

    stub = issuer_stub()

    def after(request):
        answer = stub.authorize(request)
        script = tlvlib.decode(answer.scripts)[0]
        return replace(answer, scripts=tlvlib.encode("72", script.value))

    card = new_card("contact", balance_fen=1_000)
    out, apdus = transact(card, K.EC_LOAD, 2_000, online=after, pin=lambda r: PIN, force_online=True)
    purposes = [p for p, _, _ in apdus]
    assert purposes.index("issuer script 72") > purposes.index("GENERATE AC 2")
    assert out.approved and out.script_results[:1] == b"\x20" and _get_balance(card) == 3_000


def test_script_failure_sets_tvr_and_results():
    from dataclasses import replace

    from citycard.codec import tlv as tlvlib
    from citycard.codec.emvbits import TVR_SCRIPT_FAILED_BEFORE

    stub = issuer_stub()

    def broken(request):
        answer = stub.authorize(request)
        script = tlvlib.decode(answer.scripts)[0]
        command = bytearray(script.children[1].value)
        command[-1] ^= 0xFF  # wrong MAC
        body = script.children[0].to_bytes() + tlvlib.encode("86", bytes(command))
        return replace(answer, scripts=tlvlib.encode("71", body))

    card = new_card("contact", balance_fen=1_000)
    out, _ = transact(card, K.EC_LOAD, 2_000, online=broken, pin=lambda r: PIN, force_online=True)
    assert _has(out.tvr, TVR_SCRIPT_FAILED_BEFORE)
    assert out.script_results == bytes.fromhex("11") + b"\x00\x00\x00\x01"
    assert _get_balance(card) == 1_000


def test_contactless_balance_and_log_inquiries():
    card = new_card("contactless", balance_fen=3_000)
    assert transact(card, K.PURCHASE, 200, interface="contactless")[0].approved
    out, apdus = transact(card, K.EC_BALANCE, interface="contactless")
    assert out.kind is OutcomeKind.COMPLETED and out.ec_balance_fen == 2_800
    assert b"2PAY.SYS.DDF01" in apdus[0][1]
    log, _ = transact(card, K.TRANSACTION_LOG, interface="contactless")
    assert [int(e.get("9F02").hex()) for e in log.logs] == [200]


def test_failing_acquirer_link_is_unable_to_go_online():
    def broken(_request):
        raise ConnectionError("acquirer down")

    out, _ = transact(new_card("contact", balance_fen=0), K.PURCHASE, 5_000, online=broken, pin=lambda r: PIN)
    assert out.data["8A"] in (b"Y3", b"Z3") and not out.approved


def test_log_inquiry_identifies_the_card_without_moving_money():
    """``identify``: after the log, a GET PROCESSING OPTIONS that no card can approve offline (amount 0,
    no EC; qPBOC asks for an online cryptogram) gives the PAN and PSN; the balance and logs stay as they
    were, only the ATC advances, and no GENERATE AC is sent."""
    for interface in ("contact", "contactless"):
        card = new_card(interface, balance_fen=1_000)
        assert transact(card, K.PURCHASE, 200, interface=interface)[0].approved
        atc = card.image.get_int("A000000333010101.atc")
        logs = list(card.image.nvm["A000000333010101.txn_log"])
        out, apdus = transact(card, K.TRANSACTION_LOG, interface=interface, identify=True)
        assert out.kind is OutcomeKind.COMPLETED and [int(e.get("9F02").hex()) for e in out.logs] == [200]
        pan = card.image.applications[0].data["5A"].hex().upper().rstrip("F")
        assert (out.pan, out.psn) == (pan, "01")
        assert [p for p, _, _ in apdus if p.startswith(("GET PROCESSING", "GENERATE"))] == [
            "GET PROCESSING OPTIONS"
        ]
        assert _get_balance(card) == 800 and card.image.nvm["A000000333010101.txn_log"] == logs
        assert card.image.get_int("A000000333010101.atc") == atc + 1


def _cryptogram_commands(card, kind, amount_fen, **kw) -> tuple[list[tuple[int, bool]], object]:
    """(INS, cryptogram flag) of every command the kernel sent, from ``run``'s ``on_event``."""
    from citycard.kernel.events import SendApdu
    from citycard.kernel.kernel import Kernel, Transaction
    from citycard.kernel.runner import run

    from .cardlab import det_rng

    online = kw.pop("online", None)
    txn = Transaction(kind, NOW, amount_fen, **kw)
    sent: list[tuple[int, bool]] = []

    def on_event(event) -> None:
        if isinstance(event, SendApdu):
            sent.append((event.apdu[1], event.cryptogram))

    extra = {"online": online} if online is not None else {}
    out = run(Kernel(terminal_config(), txn, det_rng(3)), card.transmit, on_event=on_event, **extra)
    return sent, out


def test_the_kernel_marks_the_commands_the_card_answers_with_a_cryptogram():
    """A terminal journals a transaction from its first cryptogram command on: the kernel says which
    command that is with a typed flag, not by the trace's wording (REVIEW.md: no strings steer money)."""
    sent, out = _cryptogram_commands(new_card("contact", balance_fen=50_000), K.PURCHASE, 1250)
    assert out.kind is OutcomeKind.APPROVED_OFFLINE
    assert [ins for ins, flagged in sent if flagged] == [0xAE]  # the one GENERATE AC
    assert [flagged for ins, flagged in sent if ins == 0xA8] == [False]  # a contact GPO takes no money

    sent, out = _cryptogram_commands(
        new_card("contact", balance_fen=1_000), K.PURCHASE, 5_000, online=issuer_stub().authorize
    )
    assert out.kind is OutcomeKind.APPROVED_ONLINE
    assert [ins for ins, flagged in sent if flagged] == [0xAE, 0xAE]  # GENERATE AC 1 and 2

    sent, out = _cryptogram_commands(
        new_card("contactless", balance_fen=5_000), K.PURCHASE, 200, interface="contactless"
    )
    assert out.kind is OutcomeKind.APPROVED_OFFLINE
    assert [ins for ins, flagged in sent if flagged] == [0xA8]  # qPBOC: the card pays in its GPO


def test_a_bug_in_the_online_callable_is_raised_not_taken_for_a_link_down():
    """REVIEW.md: a bug is raised, never turned into a business outcome. Only OnlineUnavailable (or an
    OSError, the link's) means "unable to go online"; a KeyError from the host's own code comes out of run."""
    from citycard.kernel.events import OnlineUnavailable

    def unavailable(_request):
        raise OnlineUnavailable("acquirer unreachable")

    out, _ = transact(
        new_card("contact", balance_fen=0), K.PURCHASE, 5_000, online=unavailable, pin=lambda r: PIN
    )
    assert out.data["8A"] in (b"Y3", b"Z3") and not out.approved

    def buggy(_request):
        return {}["no such key"]

    with pytest.raises(KeyError):
        transact(new_card("contact", balance_fen=0), K.PURCHASE, 5_000, online=buggy, pin=lambda r: PIN)


def test_a_kernel_bug_is_raised_and_the_transaction_can_still_be_recorded_as_interrupted(monkeypatch):
    """REVIEW.md: a bug is raised out of the kernel, never turned into an outcome; its driver then asks the
    kernel for the transaction as it stands (``interrupted``): terminated, torn once the card was asked to
    pay, with the cryptogram it gave."""
    from citycard.kernel.kernel import Kernel, Transaction
    from citycard.kernel.runner import run

    from .cardlab import det_rng

    def buggy(self):
        raise IndexError("a kernel bug")

    monkeypatch.setattr(Kernel, "_action_analysis", buggy)  # after ODA and CVM, before GENERATE AC
    kernel = Kernel(terminal_config(), Transaction(K.PURCHASE, NOW, 1250), det_rng(3))
    with pytest.raises(IndexError, match="a kernel bug"):
        run(kernel, new_card("contact", balance_fen=50_000).transmit)
    stopped = kernel.interrupted("terminal error: IndexError")
    assert stopped.kind is OutcomeKind.TERMINATED and not stopped.torn  # nothing was asked of it yet
    assert kernel.interrupted("again") is stopped  # the transaction is over
