"""Card emulator throughput: commands per second for SELECT, READ RECORD, GENERATE AC and INTERNAL
AUTHENTICATE, each beside the raw operations it wraps, measured in the same run.

Baselines (what the command cannot avoid doing):

- SELECT: building the same FCI with ``codec.tlv`` (the card's only real work);
- READ RECORD: building the same ``70`` record template with ``codec.tlv``;
- GENERATE AC: `cryptography` alone doing the card's 3DES work — the session key (2 blocks under the UDK),
  the AC (ISO 9797-1 alg. 3 over 41 bytes: single-DES CBC + a 3DES block) and the IAD MAC (same over
  8 bytes), with new key contexts as a fresh ATC requires;
- INTERNAL AUTHENTICATE: gmpy2 ``powmod`` with the CRT on the 1024-bit ICC key plus the SHA-1 of the
  signed data.

"overhead" is our time per command over the baseline's (target ≤ 3). Run: ``python -m benchmarks chip``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

import gmpy2
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from citycard.chip.card import Card
from citycard.chip.image import CardImage
from citycard.chip.personalise import ProductProfile, personalise
from citycard.codec.tlv import encode, encode_many
from citycard.demokeys import DemoKeys

SELECT = bytes.fromhex("00A4040008A00000033301010100")
READ = bytes.fromhex("00B2011400")
GPO = bytes.fromhex("80A800000B8309") + b"\x01" + bytes.fromhex("0000000000010156") + b"\x00"
CDOL1 = bytes.fromhex("0000000000010000000000000156000000000001562611250011223344120000")
GEN_AC = bytes.fromhex("80AE400034") + CDOL1 + bytes(20) + b"\x00"
INT_AUTH = bytes.fromhex("0088000004DEADBEEF00")


def _rate(fn: Callable[[], object], seconds: float = 0.4) -> float:
    """Calls per second, best of 3 runs of ``seconds`` each."""
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(10):
                fn()
            n += 10
        best = max(best, n / elapsed)
    return best


def _timed_rate(setup: Callable[[], None], fn: Callable[[], object], seconds: float = 0.4) -> float:
    """Calls per second of ``fn`` alone, ``setup`` run untimed before each call."""
    best = 0.0
    for _ in range(3):
        n, spent = 0, 0.0
        while spent < seconds:
            setup()
            start = time.perf_counter()
            fn()
            spent += time.perf_counter() - start
            n += 1
        best = max(best, n / spent)
    return best


def _card() -> Card:
    profile = ProductProfile(opening_balance_fen=999_999_999, ec_balance_limit_fen=999_999_999_999)
    image = personalise(profile, 1, DemoKeys.generate())
    image = CardImage.from_json(image.to_json())
    card = Card(image, os.urandom)
    card.power_on()
    return card


def _des_baseline(udk: bytes) -> Callable[[], object]:
    atc = [0]

    def run() -> bytes:
        atc[0] = (atc[0] + 1) & 0xFFFF
        a = atc[0].to_bytes(2, "big")
        derive = Cipher(TripleDES(udk + udk[:8]), modes.ECB()).encryptor()
        sk = derive.update(bytes(6) + a + bytes(6) + bytes((a[0] ^ 0xFF, a[1] ^ 0xFF)))
        out = b""
        for length in (48, 8):  # AC input (41 B padded) and IAD MAC input (8 B padded)
            cbc = Cipher(TripleDES(sk[:8] * 3), modes.CBC(bytes(8))).encryptor()
            chain = cbc.update(bytes(length - 8))[-8:] if length > 8 else bytes(8)
            last = Cipher(TripleDES(sk + sk[:8]), modes.ECB()).encryptor()
            out = last.update(bytes(x ^ y for x, y in zip(chain, bytes(8), strict=True)))
        return out

    return run


def _rsa_baseline(card: Card) -> Callable[[], object]:
    key = card.image.applications[0].icc_key
    assert key is not None
    block = b"\x6a\x05\x01\x09\x08" + os.urandom(8) + b"\xbb" * (key.size - 34) + bytes(20) + b"\xbc"
    c = int.from_bytes(block, "big")

    def run() -> bytes:
        hashlib.sha1(block[1:-21] + b"\xde\xad\xbe\xef").digest()
        m1 = gmpy2.powmod(c, key.dp, key.p)
        m2 = gmpy2.powmod(c, key.dq, key.q)
        h = (key.qinv * (m1 - m2)) % key.p
        return int(m2 + h * key.q).to_bytes(key.size, "big")

    return run


def main() -> None:
    card = _card()
    app = card.image.applications[0]
    rows: list[tuple[str, float, str, float]] = []

    def select_fci() -> bytes:
        logs = encode_many([("9F4D", b"\x0b\x0a"), ("DF4D", b"\x0c\x0a")])
        a5 = encode_many(
            [
                ("50", b"PBOC DEBIT"),
                ("87", b"\x01"),
                ("9F38", bytes(9)),
                ("5F2D", b"zhen"),
                ("9F11", b"\x01"),
                ("BF0C", logs),
            ]
        )
        return encode("6F", encode("84", app.aid) + encode("A5", a5))

    rows.append(("SELECT AID", _rate(lambda: card.transmit(SELECT)), "tlv: build the FCI", _rate(select_fci)))
    card.transmit(SELECT)
    tags = app.records[2][0]

    def record() -> bytes:
        return encode("70", encode_many((t, app.data[t]) for t in tags))

    rows.append(
        (
            "READ RECORD SFI 2 rec 1",
            _rate(lambda: card.transmit(READ)),
            "tlv: build the record",
            _rate(record),
        )
    )

    def new_transaction() -> None:
        card.power_on()
        card.transmit(SELECT)
        card.transmit(GPO)

    gen = _timed_rate(new_transaction, lambda: card.transmit(GEN_AC))
    rows.append(
        (
            "GENERATE AC (EC TC, debit, log)",
            gen,
            "cryptography: session key + AC + IAD MAC",
            _rate(_des_baseline(app.udk_ac)),
        )
    )
    card.power_on()
    card.transmit(SELECT)
    card.transmit(GPO)
    rows.append(
        (
            "INTERNAL AUTHENTICATE",
            _rate(lambda: card.transmit(INT_AUTH)),
            "gmpy2 CRT powmod + SHA-1",
            _rate(_rsa_baseline(card)),
        )
    )

    def purchase() -> None:
        card.power_on()
        card.transmit(SELECT)
        card.transmit(GPO)
        for sfi_rec in ("00B2011400", "00B2021400", "00B2011C00", "00B2021C00", "00B2031C00", "00B2012400"):
            card.transmit(bytes.fromhex(sfi_rec))
        card.transmit(GEN_AC)

    tx = _rate(purchase)
    print(f"{'command':34} {'cmds/s':>10}  {'baseline':42} {'ops/s':>10}  overhead")
    for name, ours, base_name, base in rows:
        print(f"{name:34} {ours:10,.0f}  {base_name:42} {base:10,.0f}  {base / ours:6.2f}x")
    print(f"{'full EC purchase (10 APDUs)':34} {tx:10,.0f}  transactions/s")


if __name__ == "__main__":
    main()
