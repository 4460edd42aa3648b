"""From the issuer's deny list to the terminal's refusal: a card issued by the issuer (its HSM keys, its
chip image), reported lost, the bank's signed deny list exported, and a validator and a POS configured with
that file refuse the card; a tampered file or a wrong KCV is refused with its reason, on the command line
an exit 2 (``--config`` with ``[[deny_list_file]]``, or ``--denylist``/``--denylist-kcv``)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from citycard.chip.card import Card as ChipCard
from citycard.chip.personalise import IssuerPublicKeyData
from citycard.cli import pos as pos_cli
from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey, build_issuer_certificate
from citycard.db import Database
from citycard.files import save_card
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest, Deposit, ReportLost
from citycard.issuer.handlers import IssuerService
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.denylist import DenyListError, encode_document, load_deny_list
from citycard.kernel.events import OutcomeKind
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.db.dbtargets import fresh_database
from tests.issuer import conftest as issuer_fixtures
from tests.issuer.conftest import Terminal
from tests.issuer.test_slice import issue_registered

PIN_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
# the issuer's fixtures (a SoftHsm, a clock, the service with ICBC and BOC); the database and the CA index
# are this module's own
banks, service, sink, hsm, clock, demo_ca, terminal_for = (
    issuer_fixtures.banks,
    issuer_fixtures.service,
    issuer_fixtures.sink,
    issuer_fixtures.hsm,
    issuer_fixtures.clock,
    issuer_fixtures.demo_ca,
    issuer_fixtures.terminal_for,
)
CA_INDEX = 0xF2  # the demo CA of the command line (demo-keys.json) is F1: the issuer's test CA takes F2


@pytest.fixture
def certify_issuer(demo_ca: RsaKey) -> Callable[[RsaPublicKey, str], IssuerPublicKeyData]:
    def certify(public: RsaPublicKey, identifier: str) -> IssuerPublicKeyData:
        cert, remainder = build_issuer_certificate(demo_ca, public, identifier, "1235", b"\x00\x00\x01")
        return IssuerPublicKeyData(CA_INDEX, cert, remainder, public.exponent)

    return certify


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:  # SQLite only: the issuer's own tests cover PostgreSQL
    with fresh_database("sqlite", tmp_path) as db:
        yield db


def _loaded_card(banks: IssuerService, terminal_for: Callable[[str], Terminal]) -> tuple[str, Terminal]:
    """A registered ICBC card with CNY 50.00 loaded onto its EC balance through the issuer (圈存)."""
    pan = issue_registered(banks)
    banks.deposit(Deposit(pan, 20_000, "dep-1"))
    term = terminal_for(pan)
    f55 = term.first_ac(5_000, txn_type=0x60)
    answer = banks.authorize(
        AuthorizationRequest("l-1", AuthorizationKind.EC_LOAD, pan, "01", 5_000, f55, "000001", "T0000001")
    )
    assert answer.approved, answer.reason
    _, sws = term.complete(answer.field55, answer.arc)
    assert sws == [0x9000] and term.ec_balance() == 5_000
    return pan, term


def _export(banks: IssuerService, path: Path) -> str:
    """The bank's deny list written as ``citycard denylist export`` does; returns the signing key's KCV."""
    signed = banks.export_deny_list("ICBC")
    doc = encode_document(
        signed.body, signed.signature, signed.key_label, signed.key_kcv, signed.modulus, signed.exponent
    )
    path.write_text(json.dumps(doc), encoding="utf-8")
    return signed.key_kcv


def _pos(tmp_path: Path, name: str, config: TerminalConfig, now: dt.datetime) -> PosTerminal:
    rnd = random.Random(5)
    return PosTerminal(
        config, SqliteJournal(tmp_path / name, "CITY0001"), clock=lambda: now, rng=rnd.randbytes
    )


def _base_config(demo_ca) -> TerminalConfig:
    public = demo_ca.public
    return TerminalConfig(
        capks=(CaPublicKey(bytes.fromhex("A000000333"), CA_INDEX, public.modulus, public.exponent),),
        pin_key=PIN_KEY,
    )


def test_lost_card_is_refused_by_terminals_loading_the_banks_file(
    banks: IssuerService, terminal_for: Callable[[str], Terminal], demo_ca, tmp_path: Path
) -> None:
    pan, term = _loaded_card(banks, terminal_for)
    card: ChipCard = term.card
    path = tmp_path / "denylist-ICBC.json"
    kcv = _export(banks, path)  # before the loss: the list does not name the card
    before = load_deny_list(path.read_bytes(), {"ICBC": {kcv}})
    now = before.generated.astimezone().replace(tzinfo=None) + dt.timedelta(minutes=10)
    validator = _pos(tmp_path, "v0.db", _base_config(demo_ca).with_deny_lists([before]), now)
    card.power_on("contactless")
    fare = validator.validate(card.transmit, 200)
    assert fare.outcome.kind is OutcomeKind.APPROVED_OFFLINE, fare.outcome.reason  # the card works

    banks.report_lost(ReportLost(pan))
    kcv = _export(banks, path)
    deny = load_deny_list(path.read_bytes(), {"ICBC": {kcv}})
    assert deny.version > before.version and pan in deny.pans
    config = _base_config(demo_ca).with_deny_lists([deny])

    card.power_on("contactless")
    refused = _pos(tmp_path, "v1.db", config, now).validate(card.transmit, 200)
    assert not refused.approved and "exception file" in refused.outcome.reason
    assert refused.entry is not None and refused.entry.state == "refund"  # paid in the GPO; TC goes up

    term.card.power_on("contact")
    balance = term.ec_balance()
    card.power_on("contact")
    declined = _pos(tmp_path, "p1.db", config, now).purchase(card.transmit, 100)
    assert declined.outcome.kind is OutcomeKind.DECLINED_OFFLINE and declined.entry is not None
    assert declined.entry.state == "declined" and declined.entry.cryptogram is not None  # an AAC, no TC
    assert term.ec_balance() == balance  # declined before the debit


def test_tampered_file_and_wrong_kcv_are_refused_with_their_reasons(
    banks: IssuerService, tmp_path: Path
) -> None:
    pan = issue_registered(banks)
    banks.report_lost(ReportLost(pan))
    path = tmp_path / "dl.json"
    kcv = _export(banks, path)
    doc = json.loads(path.read_text())
    body = base64.b64decode(doc["body"]).replace(pan.encode(), pan[:-1].encode() + b"9")  # unlist the card
    tampered = json.dumps(dict(doc, body=base64.b64encode(body).decode())).encode()
    with pytest.raises(DenyListError) as err:
        load_deny_list(tampered, {"ICBC": {kcv}})
    assert err.value.reason == "signature"
    boc_kcv = banks.export_deny_list("BOC").key_kcv
    assert boc_kcv != kcv
    with pytest.raises(DenyListError) as err:
        load_deny_list(path.read_bytes(), {"ICBC": {boc_kcv}})
    assert err.value.reason == "untrusted-key" and kcv in str(err.value)
    with pytest.raises(DenyListError) as err:  # ICBC's key is trusted, but only for BOC's list
        load_deny_list(path.read_bytes(), {"BOC": {kcv}, "ICBC": {boc_kcv}})
    assert err.value.reason == "wrong-issuer" and "only for BOC" in str(err.value)


def test_pos_cli_with_a_config_naming_the_banks_file(
    banks: IssuerService,
    terminal_for: Callable[[str], Terminal],
    sink,
    demo_ca,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``citycard pos purchase --config terminal.toml`` with ``[[deny_list_file]]``: the lost card is
    declined (exit 1); a tampered file or a wrong KCV is a configuration error (exit 2) naming the reason;
    ``--denylist``/``--denylist-kcv`` does the same without a configuration file."""
    from citycard.demokeys import DemoKeys

    from tests.kernel.cardlab import demo_keys

    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    keys: DemoKeys = demo_keys()
    (tmp_path / "demo-keys.json").write_bytes(keys.to_json())
    pan, _ = _loaded_card(banks, terminal_for)
    image = tmp_path / "card.json"
    save_card(image, sink.images[pan])
    _export(banks, tmp_path / "before.json")  # the list before the loss
    banks.report_lost(ReportLost(pan))
    lists = tmp_path / "lists"
    lists.mkdir()
    kcv = _export(banks, lists / "icbc.json")
    boc_kcv = banks.export_deny_list("BOC").key_kcv
    public = demo_ca.public
    capk = tmp_path / "capks.toml"
    from citycard.kernel.config import capk_checksum

    rid = bytes.fromhex("A000000333")
    checksum = capk_checksum(rid, CA_INDEX, public.modulus, public.exponent).hex()
    capk.write_text(
        f'[[capk]]\nrid = "A000000333"\nindex = "{CA_INDEX:02X}"\nmodulus = "{public.modulus.hex()}"\n'
        f'exponent = "{public.exponent.hex()}"\nchecksum = "{checksum}"\n'
    )
    app = typer.Typer()
    app.add_typer(pos_cli.app, name="pos")
    runner = CliRunner()

    def purchase(config_text: str | None, *extra: str) -> tuple[int, str]:
        args = ["pos", "purchase", "--card", str(image), "--amount", "1.00", "--capks", str(capk)]
        if config_text is not None:
            conf = tmp_path / "terminal.toml"
            conf.write_text(config_text, encoding="utf-8")
            args += ["--config", str(conf)]
        r = runner.invoke(app, [*args, *extra])
        return r.exit_code, r.output

    # the CLI's clock is the wall clock, the issuer's a fixed test date: a maximum age of ten years
    section = '[exception_file]\nmax_age_s = 315360000\n[[deny_list_file]]\npath = "lists/icbc.json"\n'
    section += 'issuer = "ICBC"\n'
    before = section.replace("lists/icbc.json", "before.json")
    code, out = purchase(before + f'trusted_kcv = "{kcv}"\n')
    assert code == 0 and "APPROVED OFFLINE" in out, out  # the card pays while it is not listed
    code, out = purchase(section + f'trusted_kcv = "{kcv}"\n')
    tvr = next(line.split()[1] for line in out.splitlines() if line.startswith("TVR"))
    assert code == 1 and "DECLINED OFFLINE" in out and int(tvr[:2], 16) & 0x10, out  # on exception file
    assert "CNY 49.00" in out  # declined before the debit: the balance after the first purchase
    code, out = purchase(section + f'trusted_kcv = "{boc_kcv}"\n')
    assert code == 2 and "--config" in out and "not the trusted" in out, out
    claims_boc = section.replace('issuer = "ICBC"', 'issuer = "BOC"')  # ICBC's key, trusted for BOC
    code, out = purchase(claims_boc + f'trusted_kcv = "{kcv}"\n')
    assert code == 2 and "--config" in out and "names issuer 'ICBC'" in out, out
    code, out = purchase(section.replace('issuer = "ICBC"\n', "") + f'trusted_kcv = "{kcv}"\n')
    assert code == 2 and "deny_list_file[0].issuer" in out, out  # the old form, without the bank
    doc = json.loads((lists / "icbc.json").read_text())
    body = base64.b64decode(doc["body"]).replace(b'"lost"', b'"gone"')
    (tmp_path / "tampered.json").write_text(json.dumps(dict(doc, body=base64.b64encode(body).decode())))
    code, out = purchase(None, "--denylist", str(tmp_path / "tampered.json"), "--denylist-kcv", f"ICBC={kcv}")
    assert code == 2 and "--denylist" in out and "does not verify" in out, out
    code, out = purchase(None, "--denylist", str(lists / "icbc.json"))
    assert code == 2 and "--denylist-kcv" in out, out
    code, out = purchase(None, "--denylist", str(lists / "icbc.json"), "--denylist-kcv", kcv)
    assert code == 2 and "name the bank" in out, out  # a bare KCV would trust the key for any bank
    code, out = purchase(None, "--denylist", str(lists / "icbc.json"), "--denylist-kcv", f"BOC={kcv}")
    assert code == 2 and "names issuer 'ICBC'" in out, out
    code, out = purchase(None, "--denylist", str(lists / "icbc.json"), "--denylist-kcv", f"ICBC={kcv}")
    assert code == 1 and "DECLINED" in out, out
