"""Simulated terminals: the demo city's shops and buses taking the pool's cards, through the real chain.

Each simulated terminal is a thread that does what a cashier or a bus rider does, again and again, with
the platform's real pieces and nothing stubbed on the path of money: the card is the emulated chip
(``citycard.chip.card.Card``) on the image the issuer personalised (``$CITYCARD_HOME/cards``, held with
its lock as ``citycard pos`` holds it), the terminal is ``citycard.pos.terminal.PosTerminal`` with the
PBOC kernel and its own crash-safe journal (``$CITYCARD_HOME/terminals/<TID>/journal.db``, the one ``citycard
pos --terminal TID`` uses), and it goes online through the terminal's client
(``citycard.hosts.terminal.AcquirerClient``: sign-on, MACs, PIN under the PIK, reversals) to the acquirer
of ``citycard up``, then the switch and the card's issuer.

What a POS terminal does with a card it is handed (chosen at random from the pool):

- EC balance under 50.00: an EC load (圈存) online — 200.00 from the holder's deposit account with the PIN
  for a registered card, 100.00 in cash at the counter for an unregistered one;
- otherwise, for a registered card one time in four, an online purchase with the PIN for more than the EC
  balance (paid from the deposit account);
- otherwise an offline EC purchase (contact or contactless qPBOC) of 3.00 to 80.00.

A validator (qPBOC, offline) charges by the home's fare table (``$CITYCARD_HOME/fares.toml``, the city's
:func:`~citycard.city.plan.fare_table`) and the card's transit file, as ``citycard pos validate`` does
(``citycard.transit.FareHook``, the trip record MACed by the home's transit key): a flat line's fare at
boarding; on a distance line the rider taps in at a stop and, nine times in ten when the card is on board
there, taps out at another (the tenth ride is a missing tap-out, charged its maximum at the card's next
tap); transfers, caps, concessions and double taps by the rules. Each fare is journaled with the
validator's line and vehicle. Without a fare table (or for a validator with no line) the fixed
:data:`FARE_FEN` of before. Every :data:`UPLOAD_EVERY` offline transactions and when it stops, a terminal
uploads them to the acquirer (0320), for clearing.

``Traffic.stop`` lets each terminal finish the transaction it is in, upload, and close its journal.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from citycard.bootstrap import Issuer, terminal_hsm, transit_sealer
from citycard.center.model import TerminalKind
from citycard.chip.card import Card as Chip
from citycard.chip.image import CardImage, cell_key
from citycard.chip.pboc import AID_DEBIT
from citycard.codec.money import format_amount
from citycard.config import Settings
from citycard.demokeys import DEMO_DATA_KEY, DemoKeys
from citycard.files import BusyError, CardFile, card_image_path, exclusive_lock
from citycard.hosts.terminal import AcquirerClient
from citycard.issuer.model import Card
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.events import OutcomeKind
from citycard.pos.online import TerminalIdentity
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal
from citycard.transit import FareHook, Network, Tap, TripRecord, TripRecordError, TripSealer, TripStatus

from .plan import PIN

__all__ = ["FARE_FEN", "UPLOAD_EVERY", "SimTerminal", "Traffic", "TrafficCard", "TrafficStats"]

FARE_FEN = 200
UPLOAD_EVERY = 10
LOW_EC_FEN = 5_000
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SimTerminal:
    terminal_id: str
    merchant_id: str
    merchant_name: str
    mcc: str
    kind: TerminalKind
    line: int | None = None  # a validator: its bus line and vehicle (the registry's)
    vehicle: str = ""


@dataclass(frozen=True, slots=True)
class TrafficCard:
    pan: str
    registered: bool
    image: Path

    def __repr__(self) -> str:  # never the PAN
        return f"TrafficCard(registered={self.registered})"

    @classmethod
    def of(cls, card: Card, home: Path) -> TrafficCard:
        return cls(card.pan, card.registered, card_image_path(home / "cards", card.bank_code, card.pan))


class TrafficStats:
    """Counters of what the simulated terminals did (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.amount_fen = 0
        self.started = time.monotonic()

    def add(self, what: str, amount_fen: int = 0) -> None:
        with self._lock:
            self.counts[what] += 1
            self.amount_fen += amount_fen

    def snapshot(self) -> tuple[Counter[str], int, float]:
        with self._lock:
            return Counter(self.counts), self.amount_fen, time.monotonic() - self.started

    def line(self) -> str:
        counts, fen, seconds = self.snapshot()
        done = sum(counts[k] for k in ("purchase", "online purchase", "load", "cash load", "fare", "tap"))
        rate = done / seconds if seconds > 0 else 0.0
        return (
            f"traffic: {done} approved ({counts['purchase']} EC purchases, "
            f"{counts['online purchase']} online purchases, {counts['load'] + counts['cash load']} loads, "
            f"{counts['fare']} fares, {counts['tap']} free taps; "
            f"CNY {format_amount(fen)}), {counts['declined']} declined, {counts['error']} errors, "
            f"{counts['uploaded']} uploaded; {rate:.1f} approved/s"
        )


class Traffic:
    """The simulated terminals of the city, as threads (:meth:`start`, :meth:`stop`)."""

    def __init__(
        self,
        s: Settings,
        issuer: Issuer,
        acquirer: tuple[str, int],
        terminals: list[SimTerminal],
        cards: list[TrafficCard],
        *,
        pace_s: float = 1.0,
        seed: int | None = None,
        log: Log = lambda _: None,
        network: Network | None = None,
    ) -> None:
        assert cards, "the pool has no card with a chip image"
        self.settings = s
        self.issuer = issuer
        self.acquirer = acquirer
        self.terminals = terminals
        self.cards = cards
        self.pace_s = pace_s
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        self.log = log
        self.stats = TrafficStats()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        rid, index, key = DemoKeys.load_or_create(s.home / "demo-keys.json").ca_public_key()
        self._capk = CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent)
        self._errors_logged = 0
        self.network = network
        self._sealer: TripSealer | None = transit_sealer(s) if network is not None else None

    def start(self) -> None:
        for number, terminal in enumerate(self.terminals):
            thread = threading.Thread(
                target=self._run,
                args=(terminal, random.Random(self.seed + number)),
                name=terminal.terminal_id,
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Each terminal finishes its transaction, uploads and closes its journal."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    # --- one terminal ---------------------------------------------------------------------------------------
    def _config(self, t: SimTerminal) -> TerminalConfig:
        return replace(
            TerminalConfig(capks=(self._capk,)),
            terminal_id=t.terminal_id.encode("ascii"),
            merchant_id=t.merchant_id.encode("ascii"),
            merchant_name=t.merchant_name.encode("ascii")[:40],
            mcc=bytes.fromhex(t.mcc),
        )

    def _run(self, t: SimTerminal, rng: random.Random) -> None:
        folder = self.settings.home / "terminals" / t.terminal_id
        with ExitStack() as stack:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / "journal.db"
                stack.enter_context(
                    exclusive_lock(folder / ".journal.db.lock", f"terminal journal {path}", 5)
                )
                journal = SqliteJournal(path, t.terminal_id)
                stack.callback(journal.close)
                host, port = self.acquirer
                client = AcquirerClient(
                    host,
                    port,
                    identity=TerminalIdentity(t.terminal_id, t.merchant_id),
                    hsm=terminal_hsm(self.settings, t.terminal_id),
                    journal=journal,
                    data_key=DEMO_DATA_KEY,
                    timeout_s=self.settings.acquirer_timeout_s,
                )
                stack.callback(client.close)
                pos = PosTerminal(
                    self._config(t), journal, data_key=DEMO_DATA_KEY, host=client, pin_pad=client.pin_pad
                )
            except Exception as exc:  # a terminal that cannot start is reported; the others go on
                self._error(t, exc)
                return
            offline = 0
            while not self._stopping.wait(rng.uniform(0.5, 1.5) * self.pace_s):
                card = rng.choice(self.cards)
                try:
                    offline += self._one(t, pos, card, rng)
                except Exception as exc:  # one failed transaction does not stop the terminal
                    self._error(t, exc)
                if offline >= UPLOAD_EVERY:
                    offline = 0 if self._upload(t, client) else offline
            if offline:
                self._upload(t, client)

    def _one(self, t: SimTerminal, pos: PosTerminal, card: TrafficCard, rng: random.Random) -> int:
        """One transaction with ``card``; 1 when it is an offline one to upload."""
        try:
            held = CardFile(card.image, timeout_s=0.5).__enter__()
        except BusyError:
            return 0  # another terminal (or a 'citycard pos' command) has the card now
        try:
            return self._with_card(t, pos, card, held.image, rng)
        finally:
            try:
                held.save()
            finally:
                held.__exit__(None, None, None)

    def _with_card(
        self, t: SimTerminal, pos: PosTerminal, card: TrafficCard, image: CardImage, rng: random.Random
    ) -> int:
        cell = image.nvm.get(cell_key(AID_DEBIT, "ec_balance"))
        ec = cell if isinstance(cell, int) and not isinstance(cell, bool) else 0
        contactless = t.kind is TerminalKind.VALIDATOR or rng.random() < 0.5
        chip = Chip(image, os.urandom)
        chip.power_on("contactless" if contactless else "contact")
        transmit = chip.transmit
        try:
            if t.kind is TerminalKind.VALIDATOR:
                return self._ride(t, pos, transmit, image, rng)
            if ec < LOW_EC_FEN:
                chip.power_off()
                chip.power_on("contact")
                if card.registered:
                    result = pos.load(transmit, 20_000, pin=lambda _: PIN)
                    return self._count(result.approved, "load", 20_000, offline=False)
                result = pos.load(transmit, 10_000, pin=lambda _: PIN, cash=True)
                return self._count(result.approved, "cash load", 10_000, offline=False)
            if card.registered and rng.random() < 0.25:
                chip.power_off()
                chip.power_on("contact")
                amount = ec + rng.randint(100, 30_000)
                result = pos.purchase(transmit, amount, pin=lambda _: PIN)
                return self._count(result.approved, "online purchase", amount, offline=False)
            amount = rng.randint(300, min(ec, 8_000))
            result = pos.purchase(transmit, amount, interface="contactless" if contactless else "contact")
            online = result.outcome.kind is OutcomeKind.APPROVED_ONLINE
            return self._count(
                result.approved, "online purchase" if online else "purchase", amount, not online
            )
        finally:
            chip.power_off()

    def _ride(
        self, t: SimTerminal, pos: PosTerminal, transmit: Callable[[bytes], bytes], image: CardImage,
        rng: random.Random,
    ) -> int:  # fmt: skip
        """One rider's tap at validator ``t``: by the fare table when there is one and it has ``t``'s line."""
        line = self.network.line(t.line) if self.network is not None and t.line is not None else None
        bus = (t.line, t.vehicle) if t.line is not None and t.vehicle else None
        if line is None or self._sealer is None:
            result = pos.validate(transmit, FARE_FEN, bus=bus)
            return self._count(result.approved, "fare", FARE_FEN)
        assert self.network is not None
        stop, out = 0, False
        if line.distance:
            trip = _trip(image)
            on_board = trip is not None and trip.status is TripStatus.ON_BOARD and trip.line == line.id
            if on_board and rng.random() < 0.9:  # the rider gets off here; else forgets to tap out
                assert trip is not None
                out = True
                stop = rng.choice([n for n in range(1, len(line.stops) + 1) if n != trip.boarding_stop])
            else:
                stop = rng.randint(1, len(line.stops))
        hook = FareHook(self.network, Tap(dt.datetime.now(), line.id, stop, out, t.terminal_id), self._sealer)
        result = pos.validate(transmit, 0, extension=hook, bus=bus)
        amount = result.entry.amount_fen if result.entry is not None else 0
        return self._count(result.approved, "fare" if amount else "tap", amount, offline=amount > 0)

    def _count(self, approved: bool, what: str, amount_fen: int, offline: bool = True) -> int:
        if not approved:
            self.stats.add("declined")
            return 0
        self.stats.add(what, amount_fen)
        return int(offline)

    def _upload(self, t: SimTerminal, client: AcquirerClient) -> bool:
        try:
            result = client.upload()
        except Exception as exc:
            self._error(t, exc)
            return False
        for _ in result.acknowledged:
            self.stats.add("uploaded")
        return not result.failed

    def _error(self, t: SimTerminal, exc: Exception) -> None:
        self.stats.add("error")
        if self._errors_logged < 20:  # the first ones say what is wrong; the counter says how often
            self._errors_logged += 1
            self.log(f"terminal {t.terminal_id}: {type(exc).__name__}: {' '.join(str(exc).split())}")


def _trip(image: CardImage) -> TripRecord | None:
    """What the rider knows of their card: its trip record (on board where), None without one readable."""
    records = image.nvm.get(cell_key(AID_DEBIT, "transit"))
    if not isinstance(records, list) or len(records) < 2:
        return None
    try:
        return TripRecord.decode(bytes.fromhex(records[1])[:32])
    except (TripRecordError, ValueError):
        return None
