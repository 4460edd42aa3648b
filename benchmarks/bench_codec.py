"""Codec throughput: BER-TLV decode/encode, DOL build/split, APDU parse, pretty-printing.

Baseline, measured in the same run: ``bytes.hex()`` over the same record (one C-level pass over the bytes),
so the ratio says how many such passes one of our operations costs. Run: ``python -m benchmarks codec``.
"""

from __future__ import annotations

from collections.abc import Callable

from citycard.codec.apdu import CommandApdu
from citycard.codec.dol import build_dol_data, parse_dol, split_dol_data
from citycard.codec.pretty import format_tlv
from citycard.codec.tags import RID_UNIONPAY
from citycard.codec.tlv import decode, decode_dict, encode, encode_many

from benchmarks.timing import rates

H = bytes.fromhex

# A READ RECORD response of a PBOC card (SFI 2 record 1 layout of docs/card-profile.md §6), 180 bytes.
_ITEMS = [
    ("5A", H("6234560000000001")),
    ("5F34", H("01")),
    ("5F24", H("301231")),
    ("5F25", H("250101")),
    ("5F28", H("0156")),
    ("9F07", H("FF00")),
    ("8E", H("0000000000000000410342031E031F00")),
    ("9F0D", H("D84000A800")),
    ("9F0E", H("0010000000")),
    ("9F0F", H("D84004F800")),
    ("8C", H("9F02069F03069F1A0295055F2A029A039C019F37049F21039F4E14")),
    ("8D", H("8A029F37049505910A")),
    ("9F08", H("0020")),
    ("9F42", H("0156")),
    ("9F44", H("02")),
    ("5F30", H("0220")),
    ("9F4A", H("82")),
]
RECORD = encode("70", encode_many(_ITEMS))
PDOL = H("9F66049F7A019F02069F03069F1A0295055F2A029A039C019F37049F21039F4E14")
SOURCE = {
    "9F66": H("28000000"),
    "9F7A": H("01"),
    "9F02": H("000000000150"),
    "5F2A": H("0156"),
    "9F1A": H("0156"),
    "9A": H("261125"),
    "9F37": H("A1B2C3D4"),
    "9F21": H("120000"),
    "9F4E": b"CITY BUS LINE 1",
}
PDOL_DATA = build_dol_data(PDOL, SOURCE, rid=RID_UNIONPAY)
GPO = CommandApdu(0x80, 0xA8, 0x00, 0x00, encode("83", PDOL_DATA), 256).to_bytes()


def main() -> None:
    assert CommandApdu.parse(GPO).data == encode("83", PDOL_DATA)
    cases: list[tuple[str, Callable[[], object]]] = [
        (f"baseline: bytes.hex() of the record ({len(RECORD)} B)", RECORD.hex),
        ("tlv.decode(record)", lambda: decode(RECORD)),
        ("tlv.decode_dict(record)", lambda: decode_dict(RECORD)),
        ("tlv.encode of the record (17 objects)", lambda: encode("70", encode_many(_ITEMS))),
        ("dol.parse_dol(qPBOC PDOL)", lambda: parse_dol(PDOL)),
        ("dol.build_dol_data(qPBOC PDOL)", lambda: build_dol_data(PDOL, SOURCE, rid=RID_UNIONPAY)),
        ("dol.split_dol_data(qPBOC PDOL)", lambda: split_dol_data(PDOL, PDOL_DATA)),
        ("apdu.CommandApdu.parse(GPO)", lambda: CommandApdu.parse(GPO)),
        ("pretty.format_tlv(record)", lambda: format_tlv(RECORD, rid=RID_UNIONPAY)),
    ]
    measured = rates([fn for _, fn in cases], seconds=0.06)
    base = measured[0]
    print(f"{'operation':<48} {'ops/s':>12} {'x baseline time':>16}")
    for (name, _), rate in zip(cases, measured, strict=True):
        print(f"{name:<48} {rate:>12,.0f} {base / rate:>16.1f}")


if __name__ == "__main__":
    main()
