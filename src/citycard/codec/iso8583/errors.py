"""The one error of the ISO 8583 codec: malformed input, with the field and the byte position.

Every malformed message, frame or field value raises :class:`Iso8583Error` and nothing else (the h11
rule: one typed "remote" error). A host answers it with response code 30 (format error) and posts
nothing: see :func:`citycard.codec.iso8583.codes.response_for_malformed`.
"""

from __future__ import annotations

__all__ = ["Iso8583Error"]


class Iso8583Error(ValueError):
    """Malformed ISO 8583 input.

    ``field`` names where it failed: a data field number (``"55"``) or one of ``"length"``, ``"tpdu"``,
    ``"header"``, ``"mti"``, ``"bitmap"``, ``"message"``. ``position`` is the byte offset in the input
    where decoding failed (for a field: where its length prefix or its value starts, or inside the value
    for field 55), or None for a value refused before encoding. The message never carries field values
    (a PAN or a PIN block must not reach a log through an exception).
    """

    def __init__(self, field: str, position: int | None, reason: str) -> None:
        where = f"field {field}" if position is None else f"field {field} pos {position}"
        super().__init__(f"{where}: {reason}")
        self.field = field
        self.position = position
        self.reason = reason
