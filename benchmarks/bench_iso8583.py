"""ISO 8583 throughput (UnionPay POS profile): decode and encode of a chip purchase, the typed layer, the MAC.

Baseline, measured in the same run: pyiso8583's own ``iso8583.decode`` of the same message under the same
spec, so the ratio says what our checks (bitmap against the profile, alphabets, offsets) and the typed
layer cost on top of the library. Run: ``python -m benchmarks iso8583``.
"""

from __future__ import annotations

from collections.abc import Callable

import iso8583

from citycard.codec.iso8583 import (
    SPEC,
    AuthorizationRequest,
    Field60,
    IccData,
    Tpdu,
    decode_framed,
    decode_message,
    encode_framed,
    note_received,
    parse,
    with_mac,
)
from citycard.crypto.pos_mac import pos_mac

from benchmarks.timing import rates

H = bytes.fromhex
MAK = H("0123456789ABCDEFFEDCBA9876543210")

# A contactless PBOC purchase as UnionPay terminals send it (the field 55 objects of an ARQC request).
REQUEST = AuthorizationRequest(
    mti="0200",
    pan="6224242900000113",
    processing_code="000000",
    amount_fen=1250,
    stan=403,
    expiry="2806",
    pos_entry_mode="071",
    card_sequence_number="000",
    condition_code="00",
    pin_capture_code="12",
    track2="6224242900000113D28062013949031013",
    terminal_id="10000019",
    merchant_id="850100082410002",
    currency="156",
    security_control="2600000000000000",
    icc=IccData.of(
        [
            ("9F26", H("95BBE372271DDA7C")),
            ("9F27", H("80")),
            ("9F10", H("07010103A000000A010000000000ED538FE4")),
            ("9F37", H("7F9F349E")),
            ("9F36", H("0157")),
            ("95", H("0000000000")),
            ("9A", H("190830")),
            ("9C", H("00")),
            ("9F02", H("000000001250")),
            ("5F2A", H("0156")),
            ("82", H("7C00")),
            ("9F1A", H("0156")),
            ("9F03", H("000000000000")),
            ("9F33", H("E0E1C8")),
        ]
    ),
    field60=Field60("22", 24, "000", "600"),
    mac=bytes(8),
)
MESSAGE = with_mac(REQUEST.to_bytes(), lambda block: pos_mac(MAK, block))
FRAME = encode_framed(REQUEST, Tpdu(6, 1))


def _forward() -> bytes:
    """What a hop does to a request it passes on: received (its bytes noted, as ``net.server`` notes them),
    RRN and field 32 set and the MAC taken out (``Message.replaced``), MACed again (``Message.signed``)."""
    request = parse(decode_message(MESSAGE))
    note_received(request, MESSAGE)
    forwarded = request.replaced(rrn="000000000403", acquirer_id="01020000", mac=None)
    return forwarded.signed(lambda block: pos_mac(MAK, block)).to_bytes()


def main() -> None:
    assert parse(decode_message(MESSAGE)).terminal_id == REQUEST.terminal_id
    assert parse(decode_message(_forward())).rrn == "000000000403"
    cases: list[tuple[str, Callable[[], object]]] = [
        (f"baseline: pyiso8583 decode ({len(MESSAGE)} B)", lambda: iso8583.decode(MESSAGE, SPEC)),
        ("wire.decode_message", lambda: decode_message(MESSAGE)),
        ("parse(decode_message) (typed, field 55 checked)", lambda: parse(decode_message(MESSAGE))),
        ("decode_framed (frame + typed)", lambda: decode_framed(FRAME)),
        ("AuthorizationRequest.to_bytes", REQUEST.to_bytes),
        ("with_mac, X9.19 over the MAC block", lambda: with_mac(MESSAGE, lambda b: pos_mac(MAK, b))),
        ("a hop's forward (parse, replaced, signed)", _forward),
    ]
    measured = rates([fn for _, fn in cases], seconds=0.06)
    base = measured[0]
    print(f"{'operation':<48} {'ops/s':>12} {'x baseline time':>16}")
    for (name, _), rate in zip(cases, measured, strict=True):
        print(f"{name:<48} {rate:>12,.0f} {base / rate:>16.1f}")


if __name__ == "__main__":
    main()
