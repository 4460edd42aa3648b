"""The one error of the ISO 8583 codec: malformed input, with the field and the byte position.

Every malformed message, frame or field value raises :class:`Iso8583Error` and nothing else (the h11
rule: one typed "remote" error). A host answers it with response code 30 (format error) and posts
nothing: see :func:`citycard.codec.iso8583.codes.response_for_malformed`.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ECHO_FIELDS", "Iso8583Error"]

ECHO_FIELDS = frozenset({11, 41, 42})
"""Fields a format-error response echoes (STAN, terminal, merchant): kept on the error when they decoded."""


class Iso8583Error(ValueError):
    """Malformed ISO 8583 input.

    ``field`` names where it failed: a data field number (``"55"``) or one of ``"length"``, ``"tpdu"``,
    ``"header"``, ``"mti"``, ``"bitmap"``, ``"message"``. ``position`` is the byte offset in the input
    where decoding failed (for a field: where its length prefix or its value starts, or inside the value
    for field 55), or None for a value refused before encoding. The message never carries field values
    (a PAN or a PIN block must not reach a log through an exception).

    ``mti`` and ``echo`` are what a host needs to answer with response code 30: the MTI when it decoded,
    and those of :data:`ECHO_FIELDS` that decoded cleanly before the failure (nothing secret).
    """

    def __init__(
        self,
        field: str,
        position: int | None,
        reason: str,
        *,
        mti: str | None = None,
        echo: Mapping[int, str] | None = None,
    ) -> None:
        where = f"field {field}" if position is None else f"field {field} pos {position}"
        super().__init__(f"{where}: {reason}")
        self.field = field
        self.position = position
        self.reason = reason
        self.mti = mti
        self.echo: Mapping[int, str] = dict(echo or {})
        assert set(self.echo) <= ECHO_FIELDS
