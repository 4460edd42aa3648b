"""Drive a :class:`~citycard.kernel.kernel.Kernel` over any ``transmit(bytes) -> bytes``.

The runner is the small loop between the sans-I/O kernel and the world: the card transport (the emulator,
a PC/SC reader, a test double), the PIN pad, the cardholder's choice and the acquirer are callables passed
in. A transport that raises is a card that went away (:class:`~citycard.kernel.events.CardRemoved`).
"""

from __future__ import annotations

from collections.abc import Callable

from .events import (
    Answer,
    ApplicationChoice,
    CardRemoved,
    CardResponse,
    ChooseApplication,
    Event,
    GoOnline,
    OnlineRequest,
    OnlineResponse,
    OnlineUnavailable,
    Outcome,
    PinEntry,
    RequestPin,
    SendApdu,
)
from .kernel import Kernel

__all__ = ["MAX_EVENTS", "Trace", "run"]

MAX_EVENTS = 512
"""More events than any transaction needs; a kernel bug cannot loop forever."""

Trace = Callable[[str, bytes, bytes], None]


def _unable(_: OnlineRequest) -> OnlineResponse:
    return OnlineResponse(unable_to_go_online=True)


def run(
    kernel: Kernel,
    transmit: Callable[[bytes], bytes],
    *,
    online: Callable[[OnlineRequest], OnlineResponse] = _unable,
    pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
    choose: Callable[[ChooseApplication], int | None] = lambda _: 0,
    trace: Trace | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Outcome:
    """Run ``kernel`` to its outcome. ``trace(purpose, command, response)`` sees every APDU exchanged;
    ``pin(request)`` returns the PIN, None (bypass) or a :class:`PinEntry` (``cancel=True`` ends it);
    ``online(request)`` the issuer's answer, or raises :class:`OnlineUnavailable` (or an ``OSError``, a link's
    failure) when there is none to be had. Anything else it raises is a bug: it is raised from here, never
    turned into "unable to go online" and a decision taken without the issuer."""
    event = kernel.start()
    for _ in range(MAX_EVENTS):
        if on_event is not None:
            on_event(event)
        answer: Answer
        if isinstance(event, Outcome):
            return event
        if isinstance(event, SendApdu):
            try:
                response = transmit(event.apdu)
            except Exception as exc:  # the transport's own error types vary: pyscard, sockets, emulator
                answer = CardRemoved(f"card removed: {type(exc).__name__}: {exc}")
                if trace is not None:
                    trace(event.purpose, event.apdu, b"")
            else:
                answer = CardResponse(response)
                if trace is not None:
                    trace(event.purpose, event.apdu, response)
        elif isinstance(event, RequestPin):
            entered = pin(event)
            answer = entered if isinstance(entered, PinEntry) else PinEntry(entered)
        elif isinstance(event, ChooseApplication):
            answer = ApplicationChoice(choose(event))
        elif isinstance(event, GoOnline):
            try:
                answer = online(event.request)
            except (OnlineUnavailable, OSError):  # no answer to be had: unable to go online (Book 3 §10.8)
                answer = OnlineResponse(unable_to_go_online=True)
        else:  # pragma: no cover - every event type is handled above
            raise AssertionError(event)
        event = kernel.send(answer)
    raise AssertionError("kernel did not finish within MAX_EVENTS events")
