"""The composition root: builds the HSM, the database and the issuer service from the one
:class:`citycard.config.Settings` for every entry point (the CLI today; the network services and the web
later). It belongs to the entry-point ring (it imports the adapters) as the layer under the front ends.

What it builds (the settings name each place, see ``citycard.config``):

- the software HSM (:func:`build_hsm`): key blocks under ``$CITYCARD_HOME/hsm/keys``, the master key from
  ``CITYCARD_HSM_MASTER_KEY`` or ``CITYCARD_HSM_KEY_FILE``, else ``$CITYCARD_HOME/hsm/master.key``, which only
  a set-up (``create_key=True``, ``citycard bank add``) of an HSM without keys creates, saying so;
- the database (:func:`build_database`): ``CITYCARD_DATABASE_URL`` (an SQLite file under ``$CITYCARD_HOME`` by
  default); an empty database is migrated on first use, an older one refused until ``citycard db upgrade``;
- the network front ends (issue 8): the switch's routing table from the issuer's banks and BIN ranges
  (:func:`routing_table`), an issuing bank's front end (:func:`build_issuer_front_end`) and the switch
  (:func:`build_switch`), both on an opened :class:`Issuer` (``docs/network.md``);
- the issuer service (:func:`issuer_service`): the cooling period before a lost card's refund
  (``CITYCARD_COOLING_PERIOD_DAYS``), card images under ``$CITYCARD_HOME/cards`` and personalisation records
  in ``$CITYCARD_HOME/perso/<bank>.jsonl`` (:class:`DirectorySink`), the issuer certificate from the demo CA
  (``$CITYCARD_HOME/demo-keys.json``; demo only).

- a terminal's own HSM (:func:`terminal_hsm`): the terminal's key store (its PIN entry device) under
  ``$CITYCARD_HOME/terminals/<TID>/keys`` with its own master key file ``…/terminals/<TID>/master.key``
  (mode 0600), made by ``citycard terminal add`` when it injects the terminal master key;
- the whole platform in one process (:func:`start_platform`, ``citycard up`` and ``citycard demo``): an issuer
  front end per bank, the switch linked to them and the acquirer linked to the switch, started in that order
  on loopback ports and stopped in the reverse one (:class:`Platform`);
- the registry of the Citizen Card Service Center (:func:`open_center`): merchants and terminals on the same
  database, with the platform HSM when terminals are added;
- the web console's context (:func:`build_web_context`, issue 10): the issuer service and the registry on
  one database and HSM, for ``citycard.web.create_app``.

:func:`open_issuer` puts them together and closes the database on exit. Nothing here prints or maps errors
to exit codes: the entry point does (``citycard.cli.bank.open_issuer``); notices (a key file or a schema was
created) go to the ``say`` callback. SQLAlchemy is imported only inside the functions that open the database,
so that a command that never opens it (``citycard pos validate``) never pays for it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citycard.center.commands import Command
from citycard.center.handlers import handle
from citycard.center.model import check_terminal_id
from citycard.center.ports import CenterDeps
from citycard.config import Settings, parse_address
from citycard.crypto.rsa_cert import RsaPublicKey, build_issuer_certificate
from citycard.durable import process_alive
from citycard.files import card_image_path, save_card
from citycard.hsm.api import Hsm, KeyExistsError, KeyNotFoundError, KeyStoreError, KeyUsage
from citycard.hsm.soft import DirectoryKeyStore, SoftHsm, create_master_key, load_master_key
from citycard.issuer.handlers import IssuerService
from citycard.transit.validator import TripSealer

if TYPE_CHECKING:  # the storage adapter (SQLAlchemy) is imported only when the database is opened
    from sqlalchemy import Engine

    from citycard.acquirer import BeginTransaction
    from citycard.chip.image import CardImage
    from citycard.chip.personalise import IssuerPublicKeyData
    from citycard.db import Database
    from citycard.db.center_repositories import CenterUnitOfWork
    from citycard.db.issuer_repositories import IssuerUnitOfWork
    from citycard.db.public_repositories import PublicUnitOfWork
    from citycard.hosts.acquirer import (
        AcquirerConfig,
        AcquirerHost,
        BankLookup,
        RegistryAhead,
        RegistryInTransaction,
        TerminalRegistry,
    )
    from citycard.hosts.issuer import IssuerFrontEnd
    from citycard.hosts.reports import ServiceReporter
    from citycard.hosts.switch import SwitchFrontEnd, SwitchLimits
    from citycard.issuer.model import Card
    from citycard.switch import RoutingTable

__all__ = [
    "Center",
    "DirectorySink",
    "HomeFolderError",
    "Issuer",
    "Platform",
    "PublicServices",
    "UnknownBank",
    "WebContext",
    "acquirer_banks",
    "acquirer_registry",
    "acquirer_registry_in_transaction",
    "build_acquirer",
    "build_database",
    "build_hsm",
    "build_issuer_front_end",
    "build_switch",
    "build_web_context",
    "issuer_service",
    "make_home",
    "open_acquirer",
    "open_center",
    "open_engine",
    "open_issuer",
    "open_public",
    "open_reports",
    "routing_table",
    "safe_url",
    "start_platform",
    "terminal_home",
    "terminal_hsm",
    "transit_sealer",
]

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default ``say``: notices go nowhere."""


class HomeFolderError(OSError):
    """The citycard home folder cannot be made (its message names the folder and the reason)."""


class UnknownBank(ValueError):
    """A bank code given to a network service that the issuer does not have (the message names it)."""


class NoFrontEnd(ValueError):
    """A switch that would follow routes, given no bank's front end and finding no route in the database."""


@dataclass
class Issuer:
    """The issuer service with what it was built on: its database (``unit_of_work``) and HSM."""

    service: IssuerService
    database: Database
    home: Path

    @property
    def hsm(self) -> Hsm:
        return self.service.hsm

    def unit_of_work(self, *, read_only: bool = False) -> IssuerUnitOfWork:
        from citycard.db.issuer_repositories import IssuerUnitOfWork

        return self.database.unit_of_work(IssuerUnitOfWork, read_only=read_only)


class DirectorySink:
    """Card images as ``<dir>/cards/<BANK>/<shard>/<PAN>.json`` (``citycard.files.card_image_path``;
    ``citycard card show PAN`` finds them) and the bureau's personalisation records appended to
    ``<dir>/perso/<bank>.jsonl`` (``image``: the path under ``<dir>/cards``)."""

    def __init__(self, home: Path) -> None:
        self.cards = home / "cards"
        self.perso = home / "perso"

    def check_writable(self) -> None:
        """Make both folders and write a probe file in each: a folder the cards cannot be written to is
        found before the issuing transaction, not after it committed (raises ``OSError`` naming it)."""
        for folder in (self.cards, self.perso):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(folder)) from None

    def save(self, card: Card, image: CardImage, record: dict[str, Any]) -> str:
        path = card_image_path(self.cards, card.bank_code, card.pan)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_card(path, image)
        self.perso.mkdir(parents=True, exist_ok=True)
        record = {**record, "image": path.relative_to(self.cards).as_posix()}
        with (self.perso / f"{card.bank_code}.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        return str(path)


def _master_key(s: Settings, store: DirectoryKeyStore, *, create_key: bool, say: Say) -> bytes:
    """The HSM master key from the settings (``CITYCARD_HSM_MASTER_KEY``, a ``CITYCARD_HSM_KEY_FILE`` that
    must exist) or the default key file, which only a set-up (``bank add``) of an HSM without keys creates,
    saying where; :class:`KeyStoreError` otherwise."""
    if s.hsm_master_key or s.hsm_key_file:
        return load_master_key(s.hsm_master_key, Path(s.hsm_key_file) if s.hsm_key_file else None)
    default = s.hsm_dir / "master.key"
    if default.exists():
        return load_master_key("", default)
    held = len(store.labels())
    if held:
        raise KeyStoreError(
            f"HSM master key file {default} is missing, and the {held} key block(s) in {store.directory} "
            "were made under it: restore it, or set CITYCARD_HSM_KEY_FILE to where it is"
        )
    if not create_key:
        raise KeyStoreError(
            f"no HSM master key yet: 'citycard bank add' creates {default}, or set CITYCARD_HSM_MASTER_KEY "
            "or CITYCARD_HSM_KEY_FILE"
        )
    key = create_master_key(default)
    say(f"created the HSM master key in {default} (mode 0600): keep a copy apart from {store.directory}")
    return key


def build_hsm(s: Settings, *, create_key: bool = False, say: Say = _quiet) -> SoftHsm:
    """The software HSM on the configured key store and master key (:class:`KeyStoreError` if there is no
    usable master key; only ``create_key`` may create the default key file, and ``say`` tells where)."""
    store = DirectoryKeyStore(s.hsm_dir / "keys")
    return SoftHsm(_master_key(s, store, create_key=create_key, say=say), store)


def make_home(home: Path) -> None:
    """Make the citycard home folder (:class:`HomeFolderError` naming it if it cannot be made)."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeFolderError(f"cannot make the citycard home folder {home}: {exc.strerror or exc}") from None


def safe_url(url: str) -> str:
    """The database URL with its password masked."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string()


def build_database(s: Settings, *, say: Say = _quiet) -> Database:
    """The configured database, at the current schema revision: an empty one is migrated (``say`` tells
    so), another revision refused (``SchemaRevisionError``); the caller closes it."""
    from citycard.db import Database, require_current

    make_home(s.home)
    database = Database.open(s.db_url)
    try:
        migrated = require_current(database.engine)
    except BaseException:
        database.close()
        raise
    if migrated is not None:
        say(f"created the database schema (revision {migrated}) in {safe_url(s.db_url)}")
    return database


@contextmanager
def open_engine(s: Settings) -> Iterator[Engine]:
    """An engine on the configured database as it is (no revision check: ``citycard db``); disposed on
    exit."""
    from citycard.db import make_engine

    engine = make_engine(s.db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _certifier(home: Path) -> Callable[[RsaPublicKey, str], IssuerPublicKeyData]:
    from citycard.chip.personalise import IssuerPublicKeyData
    from citycard.demokeys import DemoKeys

    demo = DemoKeys.load_or_create(home / "demo-keys.json")

    def certify(public: RsaPublicKey, identifier: str) -> IssuerPublicKeyData:
        cert, remainder = build_issuer_certificate(demo.ca_key, public, identifier, "1235", b"\x00\x00\x01")
        return IssuerPublicKeyData(demo.ca_index, cert, remainder, public.exponent)

    return certify


def issuer_service(
    s: Settings,
    hsm: SoftHsm,
    database: Database,
    *,
    bureau_kek: str | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> IssuerService:
    """The issuer service over ``database`` and ``hsm``: cards personalised into ``$CITYCARD_HOME``
    (:class:`DirectorySink`), the configured cooling period."""
    from citycard.db.issuer_repositories import IssuerUnitOfWork
    from citycard.issuer.personalisation import ChipPersonaliser

    personaliser = ChipPersonaliser(hsm, _certifier(s.home), DirectorySink(s.home), bureau_kek=bureau_kek)

    def uow() -> IssuerUnitOfWork:
        return database.unit_of_work(IssuerUnitOfWork)

    cooling_ns = s.cooling_period_days * 86_400 * 10**9
    return IssuerService(uow, hsm, clock, personaliser=personaliser, cooling_period_ns=cooling_ns)


@contextmanager
def open_issuer(
    s: Settings, *, bureau_kek: str | None = None, create_key: bool = False, say: Say = _quiet
) -> Iterator[Issuer]:
    """The issuer service on the configured database and HSM, the database closed on exit. The database
    URL is checked before anything is made (``DatabaseUrlError``), then the HSM is built (``KeyStoreError``),
    then the database opened (:class:`HomeFolderError`, ``SchemaRevisionError``, SQLAlchemy's errors)."""
    from citycard.db import parse_url

    parse_url(s.db_url)
    hsm = build_hsm(s, create_key=create_key, say=say)
    database = build_database(s, say=say)
    try:
        yield Issuer(issuer_service(s, hsm, database, bureau_kek=bureau_kek), database, s.home)
    finally:
        database.close()


def terminal_home(s: Settings, terminal_id: str) -> Path:
    """``$CITYCARD_HOME/terminals/<TID>``: a terminal's own folder (its key store and master key file).
    The ID is checked first (``MalformedCommand``: 8 characters 0-9 A-Z), so it never names another path."""
    return s.home / "terminals" / check_terminal_id(terminal_id)


def terminal_hsm(s: Settings, terminal_id: str, *, create: bool = False, say: Say = _quiet) -> SoftHsm:
    """The terminal's own HSM (its PIN entry device in the demo): a :class:`SoftHsm` on the key store
    ``terminal_home/keys`` under the master key ``terminal_home/master.key``. ``create`` (``citycard terminal
    add``, before it injects the TMK) makes the master key file when there is none, saying where; otherwise a
    terminal without one is a :class:`KeyStoreError` (not registered here, or registered on another home).
    The TMK is under ``terminal/<TID>/tmk`` (``citycard.center.model.tmk_label``), as in the platform HSM."""
    home = terminal_home(s, terminal_id)
    store = DirectoryKeyStore(home / "keys")
    key_file = home / "master.key"
    if key_file.exists() or not create:
        if not key_file.exists():
            raise KeyStoreError(
                f"terminal {terminal_id} has no key store here ({key_file} is missing): "
                "'citycard terminal add' makes it"
            )
        return SoftHsm(load_master_key("", key_file), store)
    key = create_master_key(key_file)
    say(f"created terminal {terminal_id}'s key store {store.directory} (master key {key_file}, mode 0600)")
    return SoftHsm(key, store)


TRANSIT_KEY_LABEL = "transit/tk"
"""The validators' transit key (``E6``): trip-record MACs are made under keys derived from it."""


def transit_sealer(s: Settings, *, say: Say = _quiet) -> TripSealer:
    """The validators' secure module for trip-record MACs (a PSAM's role; docs/transit.md): a
    :class:`SoftHsm` on ``$CITYCARD_HOME/transit/keys`` under ``transit/master.key`` holding the transit key
    ``transit/tk``, both made on first use. Every validator of this home shares it; the key never leaves the
    HSM (cards hold no copy: only validators compute and check the MAC)."""
    folder = s.home / "transit"
    store = DirectoryKeyStore(folder / "keys")
    key_file = folder / "master.key"
    try:
        hsm = SoftHsm(create_master_key(key_file), store)
        say(f"created the validators' transit key store {store.directory} (master key {key_file})")
    except KeyStoreError:  # made before (or just now by another validator)
        hsm = SoftHsm(load_master_key("", key_file), store)
    try:
        key = hsm.get(TRANSIT_KEY_LABEL)
    except KeyNotFoundError:
        try:
            key = hsm.generate_key(TRANSIT_KEY_LABEL, KeyUsage.EMV_OTHER)
        except KeyExistsError:
            key = hsm.get(TRANSIT_KEY_LABEL)
    return TripSealer(hsm, key)


@dataclass
class Center:
    """The registry of the Citizen Card Service Center on the database (and the platform HSM, to inject
    terminal master keys): ``center.handle(command)`` runs a command's handler in a fresh unit of work."""

    settings: Settings
    database: Database
    hsm: Hsm | None = None
    clock: Callable[[], int] = time.time_ns

    def unit_of_work(self, *, read_only: bool = False) -> CenterUnitOfWork:
        from citycard.db.center_repositories import CenterUnitOfWork

        return self.database.unit_of_work(CenterUnitOfWork, read_only=read_only)

    def deps(self) -> CenterDeps:
        def own_hsm(terminal_id: str) -> Hsm:
            return terminal_hsm(self.settings, terminal_id, create=True)

        return CenterDeps(self.clock, self.hsm, own_hsm)

    def handle(self, cmd: Command) -> Any:
        return handle(cmd, self.unit_of_work(), self.deps())


@contextmanager
def open_center(s: Settings, *, with_hsm: bool = False, say: Say = _quiet) -> Iterator[Center]:
    """The registry on the configured database, with the platform HSM if ``with_hsm`` (adding terminals;
    the HSM's master key must exist: ``citycard bank add`` made it); the database closed on exit."""
    from citycard.db import parse_url

    parse_url(s.db_url)
    hsm = build_hsm(s, say=say) if with_hsm else None
    database = build_database(s, say=say)
    try:
        yield Center(s, database, hsm)
    finally:
        database.close()


@dataclass
class PublicServices:
    """The public services of the service center on the database (``citycard.public``): counters'
    references, the inquiry back end, the industry applications per card."""

    settings: Settings
    database: Database
    clock: Callable[[], int] = time.time_ns

    def unit_of_work(self, *, read_only: bool = False) -> PublicUnitOfWork:
        from citycard.db.public_repositories import PublicUnitOfWork

        return self.database.unit_of_work(PublicUnitOfWork, read_only=read_only)


@contextmanager
def open_public(s: Settings, *, say: Say = _quiet) -> Iterator[PublicServices]:
    """The public services on the configured database; the database closed on exit."""
    from citycard.db import parse_url

    parse_url(s.db_url)
    database = build_database(s, say=say)
    try:
        yield PublicServices(s, database)
    finally:
        database.close()


# --- the network front ends (issue 8) -------------------------------------------------------------------
def routing_table(issuer: Issuer, *, with_routes: bool = False) -> RoutingTable:
    """The switch's members (each bank with its institution id and zone PIN key label) and BIN routes, as
    the issuer's database holds them now; ``with_routes``: each member with its front end's route too
    (``citycard serve route``; read only where routes are followed or shown)."""
    from citycard.db.switch_repositories import SwitchUnitOfWork
    from citycard.issuer.model import bank_key_labels
    from citycard.switch import BinRoute, Member, RoutingTable

    with issuer.unit_of_work(read_only=True) as uow:
        banks = uow.banks.list()
        ranges = uow.banks.bin_ranges()
    routes: dict[str, tuple[str, int]] = {}
    if with_routes:
        with issuer.database.unit_of_work(SwitchUnitOfWork, read_only=True) as switch:
            routes = switch.routes.all()
    members = [
        Member(bank.code, bank.institution_id, bank_key_labels(bank.code)["zpk"], routes.get(bank.code))
        for bank in banks
    ]
    return RoutingTable(members, [BinRoute(r.bin, r.bank_code) for r in ranges])


def _check_banks(table: RoutingTable, codes: list[str]) -> None:
    unknown = [code for code in codes if table.member(code) is None]
    if unknown:
        known = ", ".join(m.bank_code for m in table.members) or "none yet: 'citycard bank add'"
        raise UnknownBank(f"no bank {', '.join(unknown)} (banks: {known})")


def build_issuer_front_end(
    issuer: Issuer, bank_code: str, *, host: str = "127.0.0.1", port: int = 0, workers: int = 1
) -> IssuerFrontEnd:
    """The front end of ``bank_code`` on ``issuer`` (:class:`UnknownBank` if there is no such bank); the
    caller starts it (``async with``) and closes the database after it stopped."""
    from citycard.hosts.issuer import IssuerFrontEnd
    from citycard.hosts.zone import ZoneMac

    table = routing_table(issuer)
    _check_banks(table, [bank_code])
    zone = ZoneMac.open(issuer.hsm, bank_code)  # field 64 on the switch leg
    return IssuerFrontEnd(
        issuer.service,
        bank_code,
        table,
        host=host,
        port=port,
        workers=workers,
        zone=zone,
        reload=lambda: routing_table(issuer),  # a BIN added while it runs (hosts.routing_reload)
    )


def build_switch(
    issuer: Issuer,
    issuers: dict[str, tuple[str, int]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: SwitchLimits | None = None,
    follow_routes: bool = False,
) -> SwitchFrontEnd:
    """The switch routing by the banks and BIN ranges of ``issuer``'s database, translating PINs in its HSM,
    with one link per issuing bank's front end in ``issuers`` (:class:`UnknownBank` for a code that is not
    a bank); with ``follow_routes``, also to the front ends of the routes the database keeps for the other
    banks (``citycard serve route``), as they are now and as they change while it runs (:class:`NoFrontEnd`
    when there is neither a front end in ``issuers`` nor a route)."""
    from citycard.hosts.switch import SwitchFrontEnd
    from citycard.hosts.zone import ACQUIRER_LINK, ZoneMac

    table = routing_table(issuer, with_routes=follow_routes)
    _check_banks(table, list(issuers))
    if follow_routes and not issuers and not any(m.front_end for m in table.members):
        raise NoFrontEnd(  # before anything is made (the zone keys of the legs)
            "no bank's front end to route to: give --issuer CODE=HOST:PORT, or keep a route"
            " ('citycard serve route CODE HOST:PORT')"
        )
    zones = {link: ZoneMac.open(issuer.hsm, link) for link in (ACQUIRER_LINK, *issuers)}  # field 64, each leg
    return SwitchFrontEnd(
        table,
        issuers,
        issuer.hsm,
        host=host,
        port=port,
        limits=limits,
        zones=zones,
        reload=lambda: routing_table(issuer, with_routes=follow_routes),  # banks, BINs (and routes) added
        zone_of=(lambda code: ZoneMac.open(issuer.hsm, code)) if follow_routes else None,
    )


def acquirer_registry(database: Database) -> TerminalRegistry:
    """The acquirer's check of fields 41/42 on the center's registry (``citycard.center``): a refusal
    (``58``, ``03``) or the merchant's acquiring bank."""
    from citycard.center.views import binding_refusal, terminal_binding
    from citycard.db.center_repositories import CenterUnitOfWork
    from citycard.hosts.acquirer import TerminalCheck

    def check(terminal_id: str, merchant_id: str) -> TerminalCheck:
        binding = terminal_binding(database.unit_of_work(CenterUnitOfWork, read_only=True), terminal_id)
        refusal = binding_refusal(binding, merchant_id)
        if refusal is not None:
            return TerminalCheck(refusal[0])
        assert binding is not None
        return TerminalCheck(None, binding.merchant.bank_code)

    return check


def acquirer_registry_in_transaction() -> RegistryInTransaction:
    """:func:`acquirer_registry`'s check read in the acquirer's own unit of work (the center's tables are in
    the same database), so that a purchase's registry read, RRN and record are one transaction."""
    from citycard.center.views import binding_refusal
    from citycard.db.center_repositories import SqlTerminalRegistry
    from citycard.db.uow import SqlUnitOfWork
    from citycard.hosts.acquirer import TerminalCheck

    def check(uow: object, terminal_id: str, merchant_id: str) -> TerminalCheck:
        assert isinstance(uow, SqlUnitOfWork)
        binding = SqlTerminalRegistry(uow.session).binding(terminal_id)
        refusal = binding_refusal(binding, merchant_id)
        if refusal is not None:
            return TerminalCheck(refusal[0])
        assert binding is not None
        return TerminalCheck(None, binding.merchant.bank_code)

    return check


def acquirer_registry_ahead() -> RegistryAhead:
    """The registry of every terminal of a group of purchases read in one statement, in the acquirer's unit of
    work, for :func:`acquirer_registry_in_transaction`'s checks of that group to answer from
    (``acquirer.begin_many``'s ``ahead``)."""
    from citycard.db.center_repositories import SqlTerminalRegistry
    from citycard.db.uow import SqlUnitOfWork

    def ahead(uow: object, commands: Sequence[BeginTransaction]) -> None:
        assert isinstance(uow, SqlUnitOfWork)
        SqlTerminalRegistry(uow.session).read_ahead({cmd.key.terminal_id for cmd in commands})

    return ahead


def acquirer_banks(database: Database) -> BankLookup:
    """The acquiring bank of a bank code: its institution id (field 32) and its zone PIN key's label."""
    from citycard.db.issuer_repositories import IssuerUnitOfWork
    from citycard.hosts.acquirer import AcquiringBank
    from citycard.issuer.model import bank_key_labels

    def bank(code: str) -> AcquiringBank | None:
        with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
            found = uow.banks.get(code)
        if found is None:
            return None
        return AcquiringBank(found.code, found.institution_id, bank_key_labels(found.code)["zpk"])

    return bank


def build_acquirer(
    s: Settings,
    hsm: Hsm,
    database: Database,
    *,
    config: AcquirerConfig | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> AcquirerHost:
    """The acquirer front end (``citycard.hosts.acquirer``) on ``database`` and ``hsm``: the center's
    registry, the issuer's banks, listening on ``CITYCARD_ACQUIRER`` and forwarding to ``CITYCARD_SWITCH``
    unless ``config`` says otherwise."""
    from citycard.db.acquirer_repositories import (
        AcquirerUnitOfWork,
        acquirer_unit_of_work,
        fill_upload_columns,
        seal_clear_rows,
    )
    from citycard.hosts.acquirer import AcquirerConfig, AcquirerHost
    from citycard.hosts.zone import ACQUIRER_LINK, ZoneMac
    from citycard.hsm.protection import RecordProtection

    if config is None:
        (host, port), (switch_host, switch_port) = parse_address(s.acquirer), parse_address(s.switch)
        config = AcquirerConfig(host=host, port=port, switch_host=switch_host, switch_port=switch_port)
    protection = RecordProtection.open(hsm)  # the SAF queue's and the uploads' messages are sealed
    seal_clear_rows(database, protection)  # rows from before migration 0019
    fill_upload_columns(database, protection)  # rows from before migration 0022

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, protection)

    zone = ZoneMac.open(hsm, ACQUIRER_LINK)  # field 64 on the switch leg
    return AcquirerHost(
        hsm,
        uow,
        acquirer_registry(database),
        acquirer_banks(database),
        config,
        clock=clock,
        zone=zone,
        registry_in=acquirer_registry_in_transaction(),
        registry_ahead=acquirer_registry_ahead(),
    )


@contextmanager
def open_acquirer(
    s: Settings, *, config: AcquirerConfig | None = None, say: Say = _quiet
) -> Iterator[AcquirerHost]:
    """The acquirer front end on the configured HSM and database (not started: ``async with host``); the
    database closed on exit."""
    from citycard.db import parse_url

    parse_url(s.db_url)
    hsm = build_hsm(s, say=say)
    database = build_database(s, say=say)
    try:
        yield build_acquirer(s, hsm, database, config=config)
    finally:
        database.close()


Address = tuple[str, int]


@contextmanager
def open_reports(s: Settings, every_s: float) -> Iterator[Callable[[str], ServiceReporter] | None]:
    """The network services' reports to the center (``citycard.hosts.reports``: the console's network page,
    ``citycard serve status``) every ``every_s`` seconds, on the configured database through an engine of
    their own (a report never waits behind a service's transactions): a function giving the reporter of the
    service named so (``acquirer``, ``switch``, ``issuer ICBC``); None when ``every_s`` is 0. The database
    closed on exit."""
    if every_s <= 0:
        yield None
        return
    from citycard.center.services import ServiceReport
    from citycard.center.views import save_report
    from citycard.db.center_repositories import CenterUnitOfWork
    from citycard.hosts.reports import ServiceReporter

    database = build_database(s)
    try:

        def save(report: ServiceReport) -> list[ServiceReport]:
            return save_report(database.unit_of_work(CenterUnitOfWork), report, time.time_ns(), process_alive)

        yield lambda name: ServiceReporter(save, name, every_s)
    finally:
        database.close()


@dataclass
class Platform:
    """The network services of :func:`start_platform`, running: where each listens, and :meth:`stop`."""

    issuers: dict[str, Address]
    """Each issuing bank's front end (bank code -> host, port)."""
    switch: Address
    acquirer: Address
    bin_ranges: int
    _acquirer: AcquirerHost
    _started: list[Any]
    _issuer: Issuer
    _switch: SwitchFrontEnd
    _workers: int = 1

    def queued(self) -> int:
        """Reversals and advices the acquirer still has to deliver (kept on disk for the next start)."""
        return self._acquirer.queued()

    @property
    def statuses(self) -> list[Callable[[], str]]:
        """Each service's status line for an operator (``status()``): the issuer front ends, the switch, the
        acquirer, in that order."""
        return [service.status for service in self._started]

    @property
    def services(self) -> list[tuple[str, Address, Callable[[], str]]]:
        """Each running service's name as it reports to the center (``issuer ICBC``, ``switch``,
        ``acquirer``), where it listens and its status line, in the order of :attr:`statuses`."""
        names = [f"issuer {code}" for code in self.issuers] + ["switch", "acquirer"]
        addresses = [*self.issuers.values(), self.switch, self.acquirer]
        if len(self._started) != len(names):  # stopped (or stopping): nothing runs
            return []
        return list(zip(names, addresses, self.statuses, strict=True))

    def banks_without_front_end(self) -> list[str]:
        """The banks of the switch's routing table (which it reads again every few seconds) that have no
        front end here: added while the platform runs."""
        return [m.bank_code for m in self._switch.table.members if m.bank_code not in self.issuers]

    async def add_bank(self, code: str) -> Address:
        """Start the front end of bank ``code``, added to the database while the platform runs, on a free
        port of 127.0.0.1, and link the switch to it: its cards' next requests are answered by it (until
        then the switch answers them 91). Where it listens. Stopped with the others, last."""
        from citycard.hosts.zone import ZoneMac

        assert code not in self.issuers, code
        front = build_issuer_front_end(self._issuer, code, workers=self._workers)
        await front.start()
        try:
            address = ("127.0.0.1", front.port)
            await self._switch.link(code, address, ZoneMac.open(self._issuer.hsm, code))
        except BaseException:
            await front.stop()
            raise
        self._started.insert(len(self.issuers), front)  # the front ends first, in the order of issuers
        self.issuers[code] = address
        return address

    async def stop(self) -> None:
        """Stop the acquirer first (no new terminal request; those in flight are answered; its queue stays
        on disk), then the switch, then the issuer front ends (each finishes what it has in flight)."""
        while self._started:
            await self._started.pop().stop()


async def start_platform(
    s: Settings,
    issuer: Issuer,
    *,
    acquirer: Address | None = None,
    switch: Address | None = None,
    issuers: dict[str, Address] | None = None,
    workers: int = 1,
) -> Platform:
    """Start, in this process and on ``issuer``'s database and HSM, an issuer front end for every bank of
    the database (on ``issuers[code]``, else a free port of 127.0.0.1), the switch (``switch``, else
    ``CITYCARD_SWITCH``) linked to them and the acquirer (``acquirer``, else ``CITYCARD_ACQUIRER``) linked to
    the switch. Port 0 is a free port; :class:`Platform` says which. A service that cannot start stops those
    already started (the error is raised: ``OSError`` for a port in use, :class:`UnknownBank` for an
    ``issuers`` code that is not a bank). The caller closes the database after :meth:`Platform.stop`."""
    from citycard.hosts.acquirer import AcquirerConfig

    table = routing_table(issuer)
    _check_banks(table, list(issuers or {}))
    acquirer_host, acquirer_port = acquirer or parse_address(s.acquirer)
    switch_host, switch_port = switch or parse_address(s.switch)
    started: list[Any] = []
    try:
        links: dict[str, Address] = {}
        for member in table.members:
            host, port = (issuers or {}).get(member.bank_code, ("127.0.0.1", 0))
            front = build_issuer_front_end(issuer, member.bank_code, host=host, port=port, workers=workers)
            await front.start()
            started.append(front)
            links[member.bank_code] = (host, front.port)
        switch_front = build_switch(issuer, links, host=switch_host, port=switch_port)
        await switch_front.start()
        started.append(switch_front)
        config = AcquirerConfig(
            host=acquirer_host, port=acquirer_port, switch_host=switch_host, switch_port=switch_front.port
        )
        host_ = build_acquirer(s, issuer.hsm, issuer.database, config=config)
        await host_.start()
        started.append(host_)
    except BaseException:
        while started:
            await started.pop().stop()
        raise
    return Platform(
        links,
        (switch_host, switch_front.port),
        (acquirer_host, host_.port),
        len(table.bins),
        host_,
        started,
        issuer,
        switch_front,
        workers,
    )


# --- the web console (issue 10) -------------------------------------------------------------------------
@dataclass
class WebContext:
    """What the web application (``citycard.web.create_app``) works on: the issuer service and the center's
    registry on one database and HSM, the settings and the clock, and the network services' status lines
    when they run in the same process (``citycard up``). The caller closes it (:meth:`close`) after the server
    stopped."""

    settings: Settings
    issuer: Issuer
    center: Center
    clock: Callable[[], int] = time.time_ns
    network: Callable[[], list[str]] | None = None
    """Each network service's status line now (``Platform.statuses``), read on the event loop they run on;
    None when they run elsewhere (``citycard serve ...`` prints its own)."""

    @property
    def database(self) -> Database:
        return self.issuer.database

    @property
    def hsm(self) -> Hsm:
        return self.issuer.hsm

    def close(self) -> None:
        self.issuer.database.close()


def build_web_context(
    s: Settings, *, say: Say = _quiet, clock: Callable[[], int] = time.time_ns
) -> WebContext:
    """The web console's context on the configured database and HSM (the HSM's master key must exist:
    ``citycard bank add`` made it); the caller closes it."""
    from citycard.db import parse_url

    parse_url(s.db_url)
    hsm = build_hsm(s, say=say)
    database = build_database(s, say=say)
    try:
        issuer = Issuer(issuer_service(s, hsm, database, clock=clock), database, s.home)
        return WebContext(s, issuer, Center(s, database, hsm, clock), clock)
    except BaseException:
        database.close()
        raise
