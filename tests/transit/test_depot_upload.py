"""At the depot: a card issued by the bank (the transit file added at personalisation), EC loaded online,
rides a distance line in and out at the validator, and ``citycard pos upload`` sends the fare — and only
the fare, not the zero-amount tap-in — through the real acquirer, which keeps it for clearing."""

from __future__ import annotations

from citycard.chip.image import cell_key
from citycard.chip.pboc import AID_DEBIT
from citycard.cli import run
from citycard.config import settings
from citycard.files import find_card_image, load_card
from citycard.sqlite_journal import SqliteJournal
from citycard.transit import TripRecord, TripStatus

from tests.pos.chain import chain
from tests.transit.conftest import EXAMPLE


def _has_transit_file(pan: str) -> bool:
    path = find_card_image(settings().home / "cards", pan)
    assert path is not None
    return cell_key(AID_DEBIT, "transit") in load_card(path).nvm


def test_fares_reach_the_acquirer_as_offline_uploads(tmp_path, monkeypatch):
    with chain(tmp_path, monkeypatch) as net:
        assert _has_transit_file(net.pan)  # every card the bank issues (docs/transit.md)
        assert run(["pos", "load", "--card", net.pan, "--amount", "20", "--pin", "123456"]) == 0
        assert run(["transit", "load", str(EXAMPLE)]) == 0
        assert run(["pos", "validate", "--card", net.pan, "--line", "12", "--stop", "1"]) == 0
        path = find_card_image(settings().home / "cards", net.pan)
        trip = TripRecord.decode(bytes.fromhex(load_card(path).nvm[cell_key(AID_DEBIT, "transit")][1])[:32])
        assert trip.status is TripStatus.ON_BOARD and trip.line == 12
        argv = ["pos", "validate", "--card", net.pan, "--line", "12", "--stop", "Hospital", "--tap-out"]
        assert run(argv) == 0
        assert run(["pos", "upload"]) == 0
        assert net.uploads() == 1  # the fare; the tap-in moved no money and is not uploaded
        journal = SqliteJournal(settings().home / "terminals" / "CITY0001" / "journal.db", "CITY0001")
        kinds = {e.kind: e for e in journal.entries()}
        assert kinds["tap"].amount_fen == 0 and kinds["purchase"].amount_fen == 300
        fare = net.upload(kinds["purchase"].batch, kinds["purchase"].stan)
        journal.close()
        assert fare is not None and fare.amount_fen == 300 and fare.merchant_id == "CITYMERCHANT001"
        assert run(["pos", "upload"]) == 0 and net.uploads() == 1  # acknowledged once, not sent again
