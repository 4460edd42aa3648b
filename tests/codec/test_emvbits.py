"""The EMV/PBOC bit fields named once (citycard.codec.emvbits): the writer (the card emulator's CVR), the
readers (kernel, issuer) and the pretty-printer all go through the same table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from citycard.chip.pboc import Cvr
from citycard.codec import emvbits as bits
from citycard.codec.pretty import render_value
from citycard.codec.tags import RID_UNIONPAY
from citycard.codec.tlv import decode_dict
from citycard.kernel.tvr import cid_from_cvr

from .iso8583.test_iso8583_wire import PUBLISHED_PURCHASE

_FLAGS = {
    "issuer_auth_failed": bits.CVR_ISSUER_AUTH_FAILED,
    "pin_performed": bits.CVR_PIN_PERFORMED,
    "pin_failed": bits.CVR_PIN_FAILED,
    "last_online_incomplete": bits.CVR_LAST_ONLINE_INCOMPLETE,
    "pin_try_limit_exceeded": bits.CVR_PIN_TRY_LIMIT_EXCEEDED,
    "last_issuer_auth_failed": bits.CVR_LAST_ISSUER_AUTH_FAILED,
    "script_failed": bits.CVR_SCRIPT_FAILED,
    "dda_performed": bits.CVR_DDA_PERFORMED,
}


def test_each_table_names_distinct_bits_within_its_object() -> None:
    for table, size in ((bits.AIP_BITS, 2), (bits.TVR_BITS, 5), (bits.TSI_BITS, 2), (bits.CVR_BITS, 3)):
        assert table and all(0 <= i < size and bin(m).count("1") == 1 for i, m in table)
        assert len(set(table.values())) == len(table)  # no two bits share a meaning
    assert [sum(i == byte for i, _ in bits.TVR_BITS) for byte in range(5)] == [7, 5, 6, 5, 4]  # Annex C5
    assert {bits.cid_type(c) for c in range(256)} == set(bits.CID_NAMES)


def test_a_published_arqc_states_its_type_in_its_cvr() -> None:
    """The UnionPay purchase request published with a PBOC field 55 (the trace of
    tests/codec/iso8583/test_iso8583_wire.py): CID 80 and an IAD ``07 01 01 03 A00000 01 ‖ 0A …`` whose CVR
    says "first AC: ARQC, second AC: not requested", as VIS's layout has it."""
    start = PUBLISHED_PURCHASE.index(bytes.fromhex("9F2608"))
    tags = decode_dict(
        PUBLISHED_PURCHASE[start : PUBLISHED_PURCHASE.index(bytes.fromhex("8408"), start) + 10]
    )
    cvr = tags["9F10"][4:7]
    assert tags["9F27"] == b"\x80" and cvr == bytes.fromhex("A00000")
    assert bits.cvr_first_ac(cvr) == bits.CID_ARQC == bits.cid_type(tags["9F27"][0])
    assert bits.cvr_second_ac_bits(None) | bits.cvr_first_ac_bits(bits.CID_ARQC) == 0xA0
    assert Cvr(first_ac=bits.CID_ARQC).to_bytes() == cvr
    assert cid_from_cvr(b"\x03" + cvr) == bits.CID_ARQC
    assert render_value("9F10", tags["9F10"], rid=RID_UNIONPAY).startswith(
        "DKI 01, CVN 01, CVR A00000 (first AC ARQC; second AC not requested), algorithm 01"
    )


ac = st.sampled_from([None, bits.CID_AAC, bits.CID_TC, bits.CID_ARQC])


@given(
    first=ac,
    second=st.sampled_from([None, bits.CID_AAC, bits.CID_TC]),
    scripts=st.integers(0, 40),
    on=st.fixed_dictionaries({name: st.booleans() for name in _FLAGS}),
)
def test_the_card_s_cvr_reads_back_through_the_same_table(first, second, scripts, on) -> None:
    cvr = Cvr(first_ac=first, second_ac=second, scripts_processed=scripts, **on).to_bytes()
    assert len(cvr) == bits.CVR_LENGTH
    assert bits.cvr_first_ac(cvr) == (bits.CID_AAC if first is None else first)
    assert cvr[0] & 0xC0 == (0x80 if second is None else second)  # bits 8-7 as a CID's; 10: not requested
    assert bits.cvr_scripts(cvr) == (min(scripts, 15), on["script_failed"])
    assert {name for name, flag in _FLAGS.items() if bits.cvr_has(cvr, flag)} == {
        n for n, v in on.items() if v
    }
    # nothing but the named bits, the two cryptogram types and the script count is ever set
    named = bytearray(3)
    for i, mask in bits.CVR_BITS:
        named[i] |= mask
    assert all(b & ~(n | keep) == 0 for b, n, keep in zip(cvr, named, (0xF0, 0x00, 0xF0), strict=True))


def test_the_pretty_printer_spells_the_card_s_cvr_bits() -> None:
    cvr = Cvr(first_ac=bits.CID_TC, pin_performed=True, pin_try_limit_exceeded=True, dda_performed=True)
    cvr.scripts_processed, cvr.script_failed = 2, True
    iad = bytes.fromhex("07010103") + cvr.to_bytes() + bytes.fromhex("01")
    assert render_value("9F10", iad, rid=RID_UNIONPAY) == (
        "DKI 01, CVN 01, CVR 94402A (first AC TC; second AC not requested;"
        " offline PIN verification performed; PIN try limit exceeded;"
        " issuer script processing failed; DDA performed;"
        " 2 issuer script commands processed), algorithm 01"
    )
    assert render_value("95", bytes.fromhex("0000008000")) == bits.TVR_BITS[bits.TVR_FLOOR_LIMIT]
    assert render_value("9B", bytes.fromhex("E800")) == "; ".join(
        bits.TSI_BITS[f] for f in (bits.TSI_ODA, bits.TSI_CVM, bits.TSI_CARD_RISK_MANAGEMENT, bits.TSI_TRM)
    )
