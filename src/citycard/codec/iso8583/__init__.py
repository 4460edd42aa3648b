"""ISO 8583:1987 as UnionPay POS terminals speak it: the profile, the codec, typed messages, field 39.

- :mod:`.spec`: the profile as a pyiso8583 spec dict (plain data), field by field.
- :mod:`.wire`: frame (2-byte length, TPDU, 6-byte header), message (BCD MTI, binary bitmap), MAC block.
- :mod:`.messages`: frozen typed messages per kind, the table of our transactions.
- :mod:`.codes`: :class:`ResponseCode` with ``.approved``; a malformed message is answered with 30.
- :mod:`.service`: field 48 of a payment at a public-service counter (the service's reference).
- :mod:`.signon`: field 62 of the sign-on answer (PIK and MAK under the terminal master key, check values).
- :mod:`.errors`: :class:`Iso8583Error` (field, position, reason), the only error raised on bad input.

Pure: no I/O, no clock. The profile, its sources and the choices made are in ``docs/iso8583.md``.
"""

from __future__ import annotations

from .busride import BusRide, bus_ride
from .codes import ResponseCode, format_error_response, response_for_malformed, response_mti
from .errors import Iso8583Error
from .messages import (
    BATCH_UPLOAD_DETAIL,
    BATCH_UPLOAD_END,
    KINDS,
    TRANSACTIONS,
    AdviceRequest,
    AdviceResponse,
    AuthorizationRequest,
    AuthorizationResponse,
    BatchUpload,
    BatchUploadResponse,
    Field60,
    IccData,
    Message,
    NetworkManagementRequest,
    NetworkManagementResponse,
    ReversalRequest,
    ReversalResponse,
    SettlementRequest,
    SettlementResponse,
    TransactionType,
    decode_framed,
    encode_framed,
    note_received,
    parse,
    reversal_of,
    transaction_type,
)
from .service import ServiceKind, ServiceReference, ServiceReferenceError, service_reference
from .signon import SignOnKeys, SignOnKeysError, ZoneKeyExchange
from .spec import MAX_MESSAGE_SIZE, PROFILE_FIELDS, SPEC
from .wire import (
    MAX_FRAME_SIZE,
    Frame,
    Header,
    RawMessage,
    Tpdu,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    frame_length,
    mac_block,
    mac_matches,
    with_fields,
    with_mac,
)

__all__ = [
    "BATCH_UPLOAD_DETAIL",
    "BATCH_UPLOAD_END",
    "KINDS",
    "MAX_FRAME_SIZE",
    "MAX_MESSAGE_SIZE",
    "PROFILE_FIELDS",
    "SPEC",
    "TRANSACTIONS",
    "AdviceRequest",
    "AdviceResponse",
    "AuthorizationRequest",
    "AuthorizationResponse",
    "BatchUpload",
    "BatchUploadResponse",
    "BusRide",
    "Field60",
    "Frame",
    "Header",
    "IccData",
    "Iso8583Error",
    "Message",
    "NetworkManagementRequest",
    "NetworkManagementResponse",
    "RawMessage",
    "ResponseCode",
    "ReversalRequest",
    "ReversalResponse",
    "ServiceKind",
    "ServiceReference",
    "ServiceReferenceError",
    "SettlementRequest",
    "SettlementResponse",
    "SignOnKeys",
    "SignOnKeysError",
    "Tpdu",
    "TransactionType",
    "ZoneKeyExchange",
    "bus_ride",
    "decode_frame",
    "decode_framed",
    "decode_message",
    "encode_frame",
    "encode_framed",
    "encode_message",
    "format_error_response",
    "frame_length",
    "mac_block",
    "mac_matches",
    "note_received",
    "parse",
    "response_for_malformed",
    "response_mti",
    "reversal_of",
    "service_reference",
    "transaction_type",
    "with_fields",
    "with_mac",
]
