"""Logging for the commands that serve (``citycard serve …``, ``citycard up``, ``citycard web serve``) and
the servers they run (uvicorn's loggers): whatever a handler writes passes
:func:`citycard.codec.pan.mask_pans` first, so no PAN reaches a log — not in a message, an exception's text,
or a URL in uvicorn's access log (``GET /api/cards?pan_suffix=…`` with a whole PAN, which uvicorn wrote as
it came before this).
"""

from __future__ import annotations

import logging

from citycard.codec.pan import mask_pans

__all__ = ["UVICORN_LOGGERS", "MaskingFormatter", "configure", "mask_handlers"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
"""The loggers ``uvicorn.Config`` gives handlers of their own (its access log among them)."""


class MaskingFormatter(logging.Formatter):
    """Wraps a handler's formatter: its output, PANs masked."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return mask_pans(self.inner.format(record))


def mask_handlers(*names: str) -> None:
    """Mask the PANs in whatever the handlers of the loggers ``names`` write ("" = the root logger), each
    once: a handler masked already is left as it is."""
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler.formatter, MaskingFormatter):
                handler.setFormatter(MaskingFormatter(handler.formatter or logging.Formatter()))


def configure(*, verbose: bool, fmt: str) -> None:
    """The root logger on stderr, INFO with ``verbose`` (every request, ``--verbose``) else WARNING, in
    ``fmt``, its PANs masked."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=fmt)
    mask_handlers("")
