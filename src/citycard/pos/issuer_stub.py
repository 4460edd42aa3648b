"""An issuer **stub** for demos and tests: answers a terminal's authorization request the way a PBOC
issuer host would, from the issuer master keys alone. It is *not* the issuer (``citycard.issuer`` is);
it keeps no accounts and approves any valid ARQC.

What it does (EMV 4.3 Book 2 §8.1-8.2; JR/T 0025.5 and .13; docs/card-profile.md §9, §12): derive the card's
UDKs (option A) and PBOC session keys from the ATC, verify the ARQC over the card's AC input, answer with
response code ``00`` and ARPC method 1 in ``91`` (ARPC ‖ ARC); for an EC load (``9C`` = ``60``) add the
issuer script ``PUT DATA 9F79 <new balance> <MAC>`` in template ``71``, the new balance being the EC balance
the card reported in its issuer application data plus the load amount. A wrong ARQC gets ``05`` (do not
honour) with an ARPC over ARC ``05``, so the card declines too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citycard.codec import tlv
from citycard.crypto.cryptograms import (
    ac_input,
    arpc_method1,
    script_command,
    verify_ac,
)
from citycard.crypto.derivation import derive_icc_mk_a, derive_pboc_session_key
from citycard.kernel.events import OnlineRequest, OnlineResponse

__all__ = ["IssuerStub"]

PUT_DATA_EC_BALANCE = bytes.fromhex("84DA9F79")


@dataclass
class IssuerStub:
    imk_ac: bytes = field(repr=False)
    imk_mac: bytes = field(repr=False)
    decline_codes: dict[str, str] = field(default_factory=dict)  # PAN -> response code to force
    requests: list[OnlineRequest] = field(default_factory=list, repr=False)

    def authorize(self, request: OnlineRequest) -> OnlineResponse:
        self.requests.append(request)
        values = tlv.decode_dict(request.field55)
        atc = int.from_bytes(values["9F36"], "big")
        arqc = values["9F26"]
        udk_ac = derive_icc_mk_a(self.imk_ac, request.pan, request.psn or "00")
        sk_ac = derive_pboc_session_key(udk_ac, atc)
        valid = verify_ac(sk_ac, ac_input(values), arqc)
        rc = self.decline_codes.get(request.pan, "00") if valid else "05"
        arc = rc.encode("ascii")
        iad = arpc_method1(sk_ac, arqc, arc) + arc
        scripts = b""
        if valid and rc == "00" and request.transaction_type == 0x60:
            iad_value = values.get("9F10", b"")
            balance = int(iad_value[10:15].hex()) if len(iad_value) >= 15 else 0
            udk_mac = derive_icc_mk_a(self.imk_mac, request.pan, request.psn or "00")
            sk_mac = derive_pboc_session_key(udk_mac, atc)
            command = script_command(
                sk_mac, PUT_DATA_EC_BALANCE, _n12(balance + request.amount_fen), atc, arqc
            )
            scripts = tlv.encode("71", tlv.encode("9F18", b"\x00\x00\x00\x01") + tlv.encode("86", command))
        return OnlineResponse(response_code=rc, issuer_authentication_data=iad, scripts=scripts)


def _n12(fen: int) -> bytes:
    return bytes.fromhex(f"{fen:012d}")
