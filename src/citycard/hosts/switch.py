"""The switch front end: acquirers in, one link per issuing bank's front end out, routed by BIN.

An :class:`~citycard.net.server.Iso8583Server` takes the acquirers' host-to-host requests (0200, 0220,
0400, 0420 with 32 = acquiring institution and 37 = RRN, ``docs/network.md`` "The switch"); for each, the
pure decisions of :mod:`citycard.switch` say where it goes, and this module carries them out:

1. refused at once (``15`` no BIN matches, ``30`` 32/37/PAN missing, ``03`` unknown institution, ``40`` a
   kind that is not switched): answered here, nothing forwarded;
2. the PIN block (52) translated in the HSM from the acquiring bank's zone PIN key to the issuing bank's
   (``hsm.translate_pin_block``; a block that does not decipher to an ISO 9564 format 0 block: ``99``);
3. sent on the issuing bank's :class:`~citycard.net.link.Iso8583Link` (many requests in flight, answers
   matched by RRN) with the hop timeout, and its answer passed back as it came;
4. no answer in time, connection lost, issuer not connected, or an answer that does not decode: an
   authorization is answered ``91``, an advice or reversal not at all (its sender repeats it;
   ``switch.answer_when_unanswered``). An issuer's ``30`` that carried only 11, 41 and 42 goes back as a
   typed ``30``. An issuer front end that sends nothing while requests wait ``SwitchLimits.silent_after_s``
   for their answers, and leaves the echo test sent then unanswered too, is **silent** (``net.link``): its
   requests are not sent, but answered ``91`` at once, until it answers one of the echo tests the link then
   sends every few seconds.

An EC load from a non-designated account (0200 620000/91/47) goes as two legs in turn
(``switch.split_other_account_load``): the debit leg to the other account's issuer, then, once approved,
the card leg to the EC card's; the acquirer gets the card leg's answer (ARPC, scripts), or the debit leg's
decline, or ``91``. Its reversal goes to both legs (the card's first) and is answered only when both
answered, so the acquirer's store-and-forward repeats it until both banks have it (each applies it once).

Echo tests (0820, 60.3 = ``301``) are answered here. With ``zones`` (``citycard.hosts.zone``; the
composition root always gives them) both legs carry field 64 under their zone MAC keys: an acquirer's
request whose MAC does not verify is answered ``A0`` and not forwarded; what is forwarded is MACed under the
issuing bank's key, and an issuer's answer whose MAC does not verify is no answer. Both MACs are checked
over the bytes as received, and a request or answer passed on unchanged but for the PIN block and the MAC
goes out as the bytes received with 52 and 64 patched in place, not encoded again (``net.server`` and
``net.link`` note each message's bytes: ``codec.iso8583.note_received``); what the switch changes otherwise
(a two-leg load's legs, the card leg's answer with the acquirer's PAN, its own refusals) is encoded.
With ``reload`` the routing table is read again every few seconds and on
:meth:`SwitchFrontEnd.reload_routing` (SIGHUP), so a bank or BIN added while it runs is routed without a
restart (``hosts.routing_reload``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Final

from citycard.codec.iso8583 import (
    Message,
    NetworkManagementRequest,
    ResponseCode,
    ReversalRequest,
    Tpdu,
)
from citycard.hsm.api import Hsm, HsmInputError, KeyHandle
from citycard.net.link import (
    Iso8583Link,
    LinkError,
    LinkLimits,
    MalformedResponse,
    NotConnected,
    NotSent,
    echo_keepalive,
)
from citycard.net.link import echo_test as link_echo_test
from citycard.net.server import Iso8583Server, ServerLimits
from citycard.switch import (
    Forward,
    Leg,
    RoutingTable,
    TwoLegs,
    answer_when_unanswered,
    decide,
    split_other_account_load,
)

from .answers import answer
from .routing_reload import DEFAULT_INTERVAL_S, RoutingReload
from .zone import ACQUIRER_LINK, ZoneMac, is_key_exchange

__all__ = ["SwitchFrontEnd", "SwitchLimits", "SwitchStats", "echo_test"]

log = logging.getLogger(__name__)

SWITCH_TERMINAL: Final = "SWITCH00"
"""Field 41 of the switch's own echo tests on its links."""
SWITCH_MERCHANT: Final = "SWITCH000000000"


@dataclass(frozen=True, slots=True)
class SwitchLimits:
    """The switch's bounds (seconds end in ``_s``)."""

    hop_timeout_s: float = 8.0
    """How long the switch waits for an issuer front end's answer: shorter than the acquirer's 10 s
    (``AcquirerConfig.hop_timeout_s``), so that its 91 reaches the acquirer before the acquirer gives up."""
    echo_interval_s: float = 30.0
    """An echo test on an issuer link after this long without receiving anything."""
    silent_after_s: float = 2.0
    """An issuer front end that sends nothing while requests wait this long for their answers, and leaves the
    echo test sent then unanswered too (``link.probe_interval_s``, 2 s), is silent: its cards are answered 91
    at once, and its reversals and advices 91 (not sent), until it answers an echo test again (``net.link``;
    0: never). The requests already sent are answered 91 then, not at their hop timeout (the connection is
    dropped)."""
    server: ServerLimits = dataclasses.field(default_factory=ServerLimits)
    link: LinkLimits = dataclasses.field(default_factory=LinkLimits)

    def __post_init__(self) -> None:
        assert self.hop_timeout_s > 0 and self.echo_interval_s > 0 and self.silent_after_s >= 0


@dataclass(slots=True)
class SwitchStats:
    """Counters since start."""

    forwarded: int = 0
    answered_by_issuer: int = 0
    refused: int = 0
    """Answered here without forwarding (15, 30, 03, 40, 99)."""
    unanswered: int = 0
    """Forwarded without an answer (answered 91, or not at all for advices and reversals)."""
    pin_translations: int = 0
    echoes: int = 0


def echo_test(stan: int) -> Message:
    """An echo test (0820, 60.3 = 301) from the switch."""
    return link_echo_test(stan, SWITCH_TERMINAL, SWITCH_MERCHANT)


class SwitchFrontEnd:
    """The switch (module docstring). ``issuers`` maps each bank code to its front end's (host, port);
    a member bank without an address is treated as an issuer that does not answer."""

    def __init__(
        self,
        table: RoutingTable,
        issuers: Mapping[str, tuple[str, int]],
        hsm: Hsm,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: SwitchLimits | None = None,
        zones: Mapping[str, ZoneMac] | None = None,
        reload: Callable[[], RoutingTable] | None = None,
        reload_interval_s: float = DEFAULT_INTERVAL_S,
        zone_of: Callable[[str], ZoneMac] | None = None,
    ) -> None:
        """``zones``: the zone MAC of each leg, ``"acquirer"`` and each bank code of ``issuers``;
        ``reload``: reads the routing table again (``hosts.routing_reload``; the composition root gives
        it). ``zone_of``: given, the switch follows the routes of the table's members (``Member.front_end``,
        ``citycard serve route``) for the banks ``issuers`` does not name: a bank routed while it runs is
        linked, a front end moved is linked again at its new address, a route removed closes its link;
        ``zone_of(code)`` opens that leg's zone MAC."""
        for code in issuers:
            assert table.member(code) is not None, f"bank {code} is not in the routing table"
        self.table = table
        self.limits = limits or SwitchLimits()
        self.stats = SwitchStats()
        self._hsm = hsm
        self._keys: dict[str, KeyHandle] = {}
        self.zones = None if zones is None else dict(zones)
        self.reload = (
            None
            if reload is None
            else RoutingReload(
                reload, lambda: self.table, self._use_table, interval_s=reload_interval_s, name="switch"
            )
        )
        if zones is not None:
            assert ACQUIRER_LINK in zones and all(code in zones for code in issuers), "a zone MAC per leg"
        self.links: dict[str, Iso8583Link] = {
            code: self._new_link(code, address) for code, address in issuers.items()
        }
        self._pinned = frozenset(issuers)  # given at the start: their routes in the table are not followed
        self._zone_of = zone_of
        self._routed: set[str] = set()  # the banks linked by following their routes
        self._routing: set[asyncio.Task[None]] = set()
        if zones is None:
            self.server = Iso8583Server(self.handle, host=host, port=port, limits=self.limits.server)
        else:
            self.server = Iso8583Server(
                self._signed_handle,
                host=host,
                port=port,
                limits=self.limits.server,
                mac_check=zones[ACQUIRER_LINK].check_request,
            )

    def _new_link(self, code: str, address: tuple[str, int]) -> Iso8583Link:
        link_limits = dataclasses.replace(
            self.limits.link,
            timeout_s=self.limits.hop_timeout_s,
            echo_interval_s=self.limits.echo_interval_s,
            silent_after_s=self.limits.silent_after_s,
        )
        return Iso8583Link(
            address[0],
            address[1],
            tpdu=Tpdu(0, 0),
            limits=link_limits,
            keepalive=echo_keepalive(
                SWITCH_TERMINAL, SWITCH_MERCHANT, None if self.zones is None else self.zones[code].sign
            ),
        )

    def _follow(self, table: RoutingTable) -> None:
        """Link each bank whose route the table names and that has no link at that address (a bank routed
        while the switch runs, or a front end moved), and close the link of a bank linked by its route
        whose route is gone, on this loop; banks given at the start are left."""
        routes = {m.bank_code: m.front_end for m in table.members if m.bank_code not in self._pinned}
        for code in sorted(self._routed):
            if routes.get(code) is None:
                self._unroute(code)
        for code, address in routes.items():
            if address is None:
                continue
            link = self.links.get(code)
            if link is not None and (link.host, link.port) == address:
                continue
            self._in_background(self._route(code, address))

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._routing.add(task)
        task.add_done_callback(self._routing.discard)

    def _unroute(self, code: str) -> None:
        """A bank's route was removed: its link is closed (requests waiting on it are answered as
        unanswered, 91), and its cards are answered 91 until it is routed again."""
        self._routed.discard(code)
        link = self.links.pop(code, None)
        if link is None:
            return
        log.warning(
            "switch: bank %s's route removed: its link to %s:%d closed, its cards are answered 91",
            code,
            link.host,
            link.port,
        )
        self._in_background(link.close())

    async def _route(self, code: str, address: tuple[str, int]) -> None:
        """Link ``code`` at ``address``: a new link, or one replacing the link at its old address (requests
        waiting on the old one are answered as unanswered, 91; the next go to the new one)."""
        assert self._zone_of is not None
        old = self.links.get(code)
        try:
            if old is None:
                await self.link(code, address, None if self.zones is None else self._zone_of(code))
                self._routed.add(code)
                return
            new = self._new_link(code, address)
            await new.start()
            self.links[code] = new
            self._routed.add(code)
            log.warning("switch: bank %s moved to %s:%d", code, *address)
            await old.close()
        except Exception:  # a zone key missing, a bad address: logged; the next reload tries again
            log.exception("switch: bank %s not linked at %s:%d", code, *address)

    async def link(self, code: str, address: tuple[str, int], zone: ZoneMac | None) -> None:
        """Link a bank that has no link yet (one added while the switch runs) to its front end at
        ``address``, field 64 on the leg under ``zone`` (given when the switch's legs carry MACs): its
        cards' next requests go there. A bank linked already is refused (:class:`ValueError`)."""
        if code in self.links:
            raise ValueError(f"bank {code} is linked already")
        assert (zone is None) == (self.zones is None), "a zone MAC on every leg, or on none"
        if self.zones is not None and zone is not None:
            self.zones[code] = zone
        link = self._new_link(code, address)
        await link.start()
        self.links[code] = link
        log.warning("switch: bank %s linked to its issuer front end at %s:%d", code, *address)

    def _use_table(self, table: RoutingTable) -> None:
        """A reloaded routing table: the next request is routed by it; with ``zone_of``, the routes it
        names are followed (:meth:`_follow`). A bank that has no link (no ``--issuer`` address, no route)
        is answered as an issuer that does not answer (91)."""
        if self._zone_of is not None:
            self._follow(table)
        unlinked = sorted(
            m.bank_code
            for m in table.members
            if m.bank_code not in self.links and (self._zone_of is None or m.front_end is None)
        )
        if unlinked:
            log.warning(
                "switch: bank(s) %s have no issuer link: their cards are answered 91", ", ".join(unlinked)
            )
        self.table = table

    @property
    def port(self) -> int:
        return self.server.port

    def status(self) -> str:
        """One line for an operator (``citycard serve switch`` prints it when it changes): the acquirers'
        side, what was forwarded and how it ended, each bank's link."""
        st = self.stats
        server = self.server.stats.summary(self.server.open_connections)
        links = ", ".join(f"{code} {link.state}" for code, link in sorted(self.links.items()))
        outcomes = (
            f"{st.forwarded:,} forwarded, {st.answered_by_issuer:,} answered by the issuers,"
            f" {st.unanswered:,} unanswered, {st.refused:,} refused here"
        )
        return f"switch: {server}; {outcomes}; {links or 'no bank linked'}"

    async def start(self) -> None:
        for link in self.links.values():
            await link.start()
        if self._zone_of is not None:  # the routes the table names at the start
            self._follow(self.table)
            for task in list(self._routing):
                await task
        await self.server.start()
        if self.reload is not None:
            await self.reload.start()

    async def stop(self) -> None:
        """Stop taking requests, let those in flight finish (the server's drain), then close the links."""
        if self.reload is not None:
            await self.reload.stop()
        for task in list(self._routing):  # a link being made: done before the links close
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.stop()
        for link in self.links.values():
            await link.close()

    async def __aenter__(self) -> SwitchFrontEnd:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reload_routing(self) -> bool:
        """Read the routing table now (SIGHUP); True when it changed."""
        return False if self.reload is None else await self.reload.reload_now()

    async def _signed_handle(self, message: Message) -> Message | None:
        """:meth:`handle` behind the check of the request's MAC; its answer MACed for the acquirer."""
        assert self.zones is not None
        response = await self.handle(message)
        return None if response is None else self.zones[ACQUIRER_LINK].sign(response)

    async def handle(self, message: Message) -> Message | None:
        """The answer to one acquirer request (module docstring)."""
        if isinstance(message, NetworkManagementRequest):
            if message.field60 is not None and message.field60.network_code == "301":
                self.stats.echoes += 1
                return answer(message, ResponseCode.APPROVED)
            if self.zones is not None and is_key_exchange(message):  # the acquirer leg's ZAK replaced
                return self.zones[ACQUIRER_LINK].accept(message)
            return self._refuse(message, ResponseCode.FUNCTION_NOT_SUPPORTED, "network management")
        legs = split_other_account_load(self.table, message)
        if legs is not None:
            if not isinstance(legs, TwoLegs):
                return self._refuse(message, legs.code, legs.reason)
            return await self._two_legs(message, legs)
        decision = decide(self.table, message)
        if not isinstance(decision, Forward):
            return self._refuse(message, decision.code, decision.reason)
        return await self._leg(message, Leg(decision, message), answer_not_sent=True)

    async def _leg(self, message: Message, leg: Leg, *, answer_not_sent: bool = False) -> Message | None:
        """``leg`` sent (its PIN block translated first), its answer; for ``message``'s kind when none.
        ``answer_not_sent``: an advice or reversal that could not be sent is answered 91, not left unanswered
        (a leg of two is not: the other leg's order depends on it, ``_two_legs``)."""
        decision, outgoing = leg.route, leg.message
        if decision.pin is not None and outgoing.pin_block is not None:
            pan = outgoing.card_number
            assert pan is not None  # decide() routed it by its PAN
            try:
                block = self._hsm.translate_pin_block(
                    self._key(decision.pin.source_label),
                    self._key(decision.pin.destination_label),
                    outgoing.pin_block,
                    pan,
                )
            except HsmInputError:
                return self._refuse(message, ResponseCode.PIN_FORMAT_ERROR, "PIN block does not decipher")
            self.stats.pin_translations += 1
            outgoing = outgoing.replaced(pin_block=block)
        return await self._forward(message, outgoing, decision.issuer.bank_code, answer_not_sent)

    async def _two_legs(self, message: Message, legs: TwoLegs) -> Message | None:
        """An EC load from a non-designated account (module docstring), or its reversal."""
        if isinstance(message, ReversalRequest):
            card = await self._leg(message, legs.card)
            if card is None or legs.load_stands:
                return card
            debit = await self._leg(message, legs.debit)
            if debit is None:
                return None  # not answered: the acquirer repeats it, both banks apply it once
            return card if card.response_code != ResponseCode.APPROVED else debit
        debit = await self._leg(message, legs.debit)
        if debit is None or debit.response_code != ResponseCode.APPROVED:
            return debit  # declined (nothing posted) or 91 (the acquirer reverses both legs)
        card = await self._leg(message, legs.card)
        return None if card is None else card.replaced(pan=message.pan)

    async def _forward(
        self, message: Message, outgoing: Message, bank_code: str, answer_not_sent: bool = False
    ) -> Message | None:
        link = self.links.get(bank_code)
        self.stats.forwarded += 1
        try:
            if link is None:
                raise NotConnected(f"no address configured for bank {bank_code}")  # nothing sent
            zone = None if self.zones is None else self.zones[bank_code]
            if zone is not None:
                outgoing = zone.sign(outgoing)
            response = await link.request(outgoing, timeout_s=self.limits.hop_timeout_s)
            if zone is not None and not zone.answer_ok(response):
                return self._unanswered(message, bank_code, LinkError("the answer's MAC does not verify"))
        except MalformedResponse as exc:
            if exc.response_code == ResponseCode.FORMAT_ERROR:
                self.stats.answered_by_issuer += 1
                return answer(message, ResponseCode.FORMAT_ERROR)
            return self._unanswered(message, bank_code, exc)
        except NotSent as exc:
            return self._unanswered(message, bank_code, exc, sent=not answer_not_sent)
        except LinkError as exc:
            return self._unanswered(message, bank_code, exc)
        self.stats.answered_by_issuer += 1
        return response

    def _unanswered(
        self, message: Message, bank_code: str, exc: Exception, *, sent: bool = True
    ) -> Message | None:
        self.stats.unanswered += 1
        code = answer_when_unanswered(message.mti, sent=sent)
        log.info(
            "%s rrn %s to %s: %s (%s)",
            message.mti,
            message.rrn,
            bank_code,
            type(exc).__name__,
            f"answered {code}" if code else "not answered: the sender repeats it",
        )
        return None if code is None else answer(message, code)

    def _refuse(self, message: Message, code: ResponseCode, reason: str) -> Message:
        self.stats.refused += 1
        log.info("%s stan %s rrn %s refused %s: %s", message.mti, message.stan, message.rrn, code, reason)
        return answer(message, code)

    def _key(self, label: str) -> KeyHandle:
        handle = self._keys.get(label)
        if handle is None:
            handle = self._keys[label] = self._hsm.get(label)
        return handle
