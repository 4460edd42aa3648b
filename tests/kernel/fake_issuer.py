"""A **fake issuer**, a test double for the kernel alone (tests/kernel, tests/pos unit tests of the
terminal application): answers a terminal's authorization request the way a PBOC issuer host would, from
the issuer master keys alone. It is *not* the issuer (``citycard.issuer`` is) and nothing in ``src`` uses
it: the terminal goes online to the real acquirer (``citycard.hosts.terminal``). It keeps no accounts and
approves any valid ARQC.

What it does (EMV 4.3 Book 2 §8.1-8.2; JR/T 0025.5 and .13; docs/card-profile.md §9, §12): derive the card's
UDKs (option A) and PBOC session keys from the ATC, verify the ARQC over the card's AC input, answer with
response code ``00`` and ARPC method 1 in ``91`` (ARPC ‖ ARC); for an EC load (``9C`` = ``60``) add the
issuer script ``PUT DATA 9F79 <new balance> <MAC>`` in template ``71``, the new balance being the EC balance
the card reported in its issuer application data plus the load amount. A wrong ARQC gets ``05`` (do not
honour) with an ARPC over ARC ``05``, so the card declines too.

Online PIN: given the terminal PIN key (``pin_key``, the demo key of ``citycard pos``), the stub deciphers
the ISO 9564 format-0 PIN block and compares the PIN with the card's (``pins`` by PAN, else
``default_pin``: every demo card is personalised with ``123456``); a wrong or unreadable PIN block gets
``55`` (incorrect PIN). Without ``pin_key`` it does not check PINs at all. A real issuer verifies PINs in
its HSM against a PIN offset over every digit, never against a table of PINs (``citycard.issuer``, IBM
3624 with a try counter): this is a demo stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citycard.codec import tlv
from citycard.codec.money import amount_from_bcd
from citycard.crypto import des
from citycard.crypto.cryptograms import (
    ac_input,
    arpc_method1,
    script_command,
    verify_ac,
)
from citycard.crypto.derivation import derive_icc_mk_a, derive_pboc_session_key
from citycard.crypto.pin import pin_from_iso0
from citycard.kernel.events import OnlineRequest, OnlineResponse

__all__ = ["IssuerStub"]

PUT_DATA_EC_BALANCE = bytes.fromhex("84DA9F79")


@dataclass
class IssuerStub:
    imk_ac: bytes = field(repr=False)
    imk_mac: bytes = field(repr=False)
    decline_codes: dict[str, str] = field(default_factory=dict)  # PAN -> response code to force
    requests: list[OnlineRequest] = field(default_factory=list, repr=False)
    pin_key: bytes = field(default=b"", repr=False)  # terminal PIN key; empty: PINs are not checked
    pins: dict[str, str] = field(default_factory=dict, repr=False)  # PAN -> PIN
    default_pin: str | None = field(default=None, repr=False)

    def pin_ok(self, request: OnlineRequest) -> bool:
        """The online PIN block, when there is one, carries the card's PIN (True when PINs are unchecked)."""
        if not self.pin_key or request.pin_block is None:
            return True
        expected = self.pins.get(request.pan, self.default_pin)
        try:
            pin = pin_from_iso0(des.ecb_decrypt(self.pin_key, request.pin_block), request.pan)
        except ValueError:  # PinBlockError, or a block of the wrong length
            return False
        return expected is not None and pin == expected

    def authorize(self, request: OnlineRequest) -> OnlineResponse:
        self.requests.append(request)
        try:
            values = tlv.decode_dict(request.field55)
            atc = int.from_bytes(values["9F36"], "big")
            arqc = values["9F26"]
            udk_ac = derive_icc_mk_a(self.imk_ac, request.pan, request.psn or "00")
            sk_ac = derive_pboc_session_key(udk_ac, atc)
            valid = verify_ac(sk_ac, ac_input(values), arqc)
        except (ValueError, KeyError):  # chip data it cannot read: as an issuer, a format error, no ARPC
            return OnlineResponse(response_code="30")
        rc = self.decline_codes.get(request.pan, "00") if valid else "05"
        if rc == "00" and not self.pin_ok(request):
            rc = "55"  # incorrect PIN
        arc = rc.encode("ascii")
        iad = arpc_method1(sk_ac, arqc, arc) + arc
        scripts = b""
        if valid and rc == "00" and request.transaction_type == 0x60:
            iad_value = values.get("9F10", b"")
            try:
                balance = amount_from_bcd(iad_value[10:15]) if len(iad_value) >= 15 else 0
            except ValueError:  # an EC balance that is not BCD: unreadable chip data, as above
                return OnlineResponse(response_code="30")
            udk_mac = derive_icc_mk_a(self.imk_mac, request.pan, request.psn or "00")
            sk_mac = derive_pboc_session_key(udk_mac, atc)
            command = script_command(
                sk_mac, PUT_DATA_EC_BALANCE, _n12(balance + request.amount_fen), atc, arqc
            )
            scripts = tlv.encode("71", tlv.encode("9F18", b"\x00\x00\x00\x01") + tlv.encode("86", command))
        return OnlineResponse(response_code=rc, issuer_authentication_data=iad, scripts=scripts)


def _n12(fen: int) -> bytes:
    return bytes.fromhex(f"{fen:012d}")
