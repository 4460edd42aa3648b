"""Reversals (ISO 8583 0400/0420): the original's transfers mirrored, once.

A reversal names its original by ``original_request_id``; it must be for the same PAN (else ``25``, no such
original) and come from the original's terminal and merchant (fields 41, 42; else ``58``). An original that
was declined or posted nothing is acknowledged (``00``) with nothing to reverse; one reversed already is
acknowledged again. An EC load whose reversal reports, in the issuer script results ``9F5B``, that the card
applied the ``PUT DATA 9F79`` stands: the card holds the money (``00``, nothing reversed). A reversed void
puts its purchase back (it may be voided again); a reversed refund gives back what it refunded of it.

A reversal that arrives before its original (the original's answer was lost, or it is still on its way
through a store-and-forward queue) finds no original: it leaves a tombstone — a row under the original's
request id (``ports.TOMBSTONE``, answered ``12`` "reversed before it arrived") — and is acknowledged
(``00``) having posted nothing. The original, if it arrives later, finds its request id taken by the
tombstone and is declined, posting nothing; so both orders end with the account as it was. The reversal's
own retries (``0420``, any number of them) get its stored answer.
"""

from __future__ import annotations

from citycard.ledger.model import Transfer

from ..chipdata import ChipDataError, parse_script_results
from ..commands import EC_LOADS, AuthorizationKind, AuthorizationRequest, AuthorizationResponse
from ..decision import Decision, settle
from ..model import transfer_id
from ..ports import TOMBSTONE, IssuerUnitOfWork, StoredAuthorization
from ..views import encode_response
from .deps import Deps, link

__all__ = ["reverse"]

_EC_LOAD_SCRIPT_ID = bytes(4)  # the load's PUT DATA 9F79 is script 0 of the answer (its 9F18)


def reverse(
    req: AuthorizationRequest, uow: IssuerUnitOfWork, deps: Deps
) -> tuple[AuthorizationResponse, list[int]] | None:
    """The reversal's answer and the transfers it posted; None when the original's request id was stored
    by a simultaneous first attempt as the tombstone was written (the caller rolls back, reads again)."""
    assert req.original_request_id is not None
    original = uow.authorizations.get(req.original_request_id, for_update=True)
    if original is None:
        if not uow.authorizations.add(_tombstone(req, deps.clock())):
            return None
        reason = "original not seen: recorded, it will be declined if it arrives; nothing posted"
        return AuthorizationResponse(req.request_id, "00", reason, flags=("original_unknown",)), []
    if original.pan != req.pan:
        return AuthorizationResponse(req.request_id, "25", "no such original transaction"), []
    if (req.terminal_id, req.merchant_id) != (original.terminal_id, original.merchant_id):
        return AuthorizationResponse(
            req.request_id,
            "58",
            "the reversal's terminal (field 41) or merchant (field 42) is not the original's",
            flags=("terminal_mismatch",),
        ), []
    if original.reversed_by is not None:
        return AuthorizationResponse(req.request_id, "00", f"already reversed by {original.reversed_by}"), []
    if original.response_code != "00" or not original.transfer_ids:
        return AuthorizationResponse(req.request_id, "00", "nothing was posted; nothing to reverse"), []
    if original.kind in EC_LOADS:  # a cash load's too: the chip may hold it
        try:
            results = parse_script_results(req.field55)
        except ChipDataError as exc:
            return AuthorizationResponse(req.request_id, "30", f"field 55: {exc.detail}"), []
        if any(r.processed and r.script_id == _EC_LOAD_SCRIPT_ID for r in results):
            reason = "the card applied the EC load script (9F5B): the load stands, nothing reversed"
            return AuthorizationResponse(req.request_id, "00", reason), []
    legs = [
        Transfer(
            transfer_id(req.request_id, i), t.credit_account_id, t.debit_account_id, t.amount_fen, code=t.code
        )
        for i, t in enumerate(uow.ledger.lookup_transfers(original.transfer_ids), start=1)
    ]
    posted = settle(Decision("00", legs=tuple(legs)), uow.ledger.create_transfers(link(legs)))
    if not posted.approved:
        return AuthorizationResponse(req.request_id, posted.code, f"reversal refused: {posted.reason}"), []
    uow.authorizations.mark_reversed(original.request_id, req.request_id)
    if original.original_request_id is not None and original.kind == AuthorizationKind.VOID:
        uow.authorizations.mark_reversed(original.original_request_id, None)  # the purchase stands again
    if original.original_request_id is not None and original.kind == AuthorizationKind.REFUND:
        uow.authorizations.add_refunded(original.original_request_id, -original.amount_fen)
    return AuthorizationResponse(req.request_id, "00", "reversed"), [t.id for t in legs]


def _tombstone(req: AuthorizationRequest, now_ns: int) -> StoredAuthorization:
    """The row that answers the original, should it arrive after its reversal: declined, nothing posted."""
    assert req.original_request_id is not None
    answer = AuthorizationResponse(
        req.original_request_id, "12", "reversed before it arrived", flags=("reversed_before_arrival",)
    )
    return StoredAuthorization(
        request_id=req.original_request_id,
        pan=req.pan,
        kind=TOMBSTONE,
        fingerprint="",
        response_code=answer.response_code,
        amount_fen=req.amount_fen,
        response=encode_response(answer),
        transfer_ids=(),
        created_ns=now_ns,
        reversed_by=req.request_id,
        terminal_id=req.terminal_id,
        merchant_id=req.merchant_id,
    )
