"""The bus network as data: lines, their stops and fare tables, the transfer rule, the caps and the
concession rates, read from a TOML document (``docs/transit.md`` "Fare table"). Every value is checked
here: a document that is not valid raises :class:`NetworkError` naming the field, and nothing is built.

Amounts are integer fen (``*_fen`` keys), never yuan strings or floats. A line is either **flat** (one
``fare_fen`` charged when the rider boards) or **distance** (``bands``: the fare by the number of stops
travelled, charged when the rider alights; the band of the longest trip is the line's maximum fare).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Band", "Concessions", "Line", "Network", "NetworkError", "Transfer", "parse_network"]

MAX_LINES = 1_000
MAX_STOPS = 254
"""A stop is one byte in the trip record (1 to 254; 0 means none)."""
MAX_LINE_ID = 0xFFFF
"""A line is two bytes in the trip record."""
MAX_FARE_FEN = 100_000
"""No single fare above CNY 1,000.00 (the trip record keeps amounts in three bytes)."""
MAX_CAP_FEN = 0xFFFFFF
MAX_WINDOW_S = 86_400


class NetworkError(ValueError):
    """A fare table that is not valid; ``where`` names the field (``lines[2].bands[1].fare_fen``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"fare table {where}: {message}")
        self.where = where


@dataclass(frozen=True, slots=True)
class Band:
    up_to_stops: int
    fare_fen: int


@dataclass(frozen=True, slots=True)
class Line:
    id: int
    name: str
    stops: tuple[str, ...]
    fare_fen: int | None = None  # flat line
    bands: tuple[Band, ...] = ()  # distance line

    @property
    def distance(self) -> bool:
        return bool(self.bands)

    @property
    def max_fare_fen(self) -> int:
        """The fare of the longest trip: charged when a tap-out is missing."""
        return self.bands[-1].fare_fen if self.bands else (self.fare_fen or 0)

    def fare_between(self, boarding: int, alighting: int) -> int:
        """The distance fare from stop ``boarding`` to stop ``alighting`` (1-based, either direction)."""
        assert self.bands and 1 <= boarding <= len(self.stops) and 1 <= alighting <= len(self.stops)
        travelled = abs(alighting - boarding)
        for band in self.bands:
            if travelled <= band.up_to_stops:
                return band.fare_fen
        raise AssertionError("the last band covers the line (checked at load)")

    def stop_number(self, stop: str) -> int | None:
        """A stop by its 1-based number or its name."""
        if stop.isdigit():
            number = int(stop)
            return number if 1 <= number <= len(self.stops) else None
        return self.stops.index(stop) + 1 if stop in self.stops else None


@dataclass(frozen=True, slots=True)
class Transfer:
    window_s: int = 0  # 0: no transfer discount
    discount_fen: int = 0


@dataclass(frozen=True, slots=True)
class Concessions:
    """Percent of the fare each registered category pays (0: free, 100: full fare)."""

    elderly: int = 100
    student: int = 100
    disabled: int = 100

    def percent(self, category: str) -> int:
        value = getattr(self, category, 100)
        assert isinstance(value, int)
        return value


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    lines: Mapping[int, Line]
    transfer: Transfer
    concessions: Concessions
    daily_cap_fen: int = 0  # 0: no cap
    monthly_cap_fen: int = 0
    double_tap_s: int = 60
    max_trip_s: int = 3 * 3600  # an open tap-in older than this is a missing tap-out

    def line(self, line_id: int) -> Line | None:
        return self.lines.get(line_id)


def parse_network(text: str) -> Network:
    """Parse and check a fare table (TOML text)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NetworkError("document", f"not TOML ({exc})") from None
    _only(doc, {"network", "transfer", "concessions", "lines"}, "document")
    head = _table(doc, "network", "network")
    _only(head, {"name", "daily_cap_fen", "monthly_cap_fen", "double_tap_s", "max_trip_s"}, "network")
    lines_doc = doc.get("lines")
    if not isinstance(lines_doc, list) or not lines_doc:
        raise NetworkError("lines", "at least one [[lines]] table")
    if len(lines_doc) > MAX_LINES:
        raise NetworkError("lines", f"at most {MAX_LINES} lines")
    lines: dict[int, Line] = {}
    for index, line_doc in enumerate(lines_doc):
        line = _line(line_doc, f"lines[{index}]")
        if line.id in lines:
            raise NetworkError(f"lines[{index}].id", f"line {line.id} appears twice")
        lines[line.id] = line
    transfer_doc = _table(doc, "transfer", "transfer", required=False)
    _only(transfer_doc, {"window_s", "discount_fen"}, "transfer")
    concessions_doc = _table(doc, "concessions", "concessions", required=False)
    _only(concessions_doc, {"elderly", "student", "disabled"}, "concessions")
    daily = _int(head, "daily_cap_fen", "network", 0, MAX_CAP_FEN, 0)
    monthly = _int(head, "monthly_cap_fen", "network", 0, MAX_CAP_FEN, 0)
    if daily and monthly and monthly < daily:
        raise NetworkError("network.monthly_cap_fen", "below the daily cap")
    return Network(
        name=_str(head, "name", "network"),
        lines=lines,
        transfer=Transfer(
            _int(transfer_doc, "window_s", "transfer", 0, MAX_WINDOW_S, 0),
            _int(transfer_doc, "discount_fen", "transfer", 0, MAX_FARE_FEN, 0),
        ),
        concessions=Concessions(
            **{
                k: _int(concessions_doc, k, "concessions", 0, 100, 100)
                for k in ("elderly", "student", "disabled")
            }
        ),
        daily_cap_fen=daily,
        monthly_cap_fen=monthly,
        double_tap_s=_int(head, "double_tap_s", "network", 0, 3600, 60),
        max_trip_s=_int(head, "max_trip_s", "network", 60, MAX_WINDOW_S, 3 * 3600),
    )


def _line(doc: Any, where: str) -> Line:
    if not isinstance(doc, dict):
        raise NetworkError(where, "must be a table")
    _only(doc, {"id", "name", "stops", "fare_fen", "bands"}, where)
    line_id = _int(doc, "id", where, 1, MAX_LINE_ID)
    name = _str(doc, "name", where)
    stops_doc = doc.get("stops", [])
    if not isinstance(stops_doc, list) or not all(isinstance(s, str) and s.strip() for s in stops_doc):
        raise NetworkError(f"{where}.stops", "must be a list of stop names")
    if len(stops_doc) > MAX_STOPS:
        raise NetworkError(f"{where}.stops", f"at most {MAX_STOPS} stops")
    if len(set(stops_doc)) != len(stops_doc):
        raise NetworkError(f"{where}.stops", "a stop name appears twice")
    if any(s.isdigit() for s in stops_doc):
        raise NetworkError(
            f"{where}.stops", "a stop name may not be a number (numbers name stops by position)"
        )
    stops = tuple(stops_doc)
    if ("fare_fen" in doc) == ("bands" in doc):
        raise NetworkError(where, "give exactly one of fare_fen (flat line) and bands (distance line)")
    if "fare_fen" in doc:
        return Line(line_id, name, stops, fare_fen=_int(doc, "fare_fen", where, 0, MAX_FARE_FEN))
    if len(stops) < 2:
        raise NetworkError(f"{where}.stops", "a distance line needs at least two stops")
    return Line(line_id, name, stops, bands=_bands(doc["bands"], f"{where}.bands", len(stops) - 1))


def _bands(doc: Any, where: str, longest: int) -> tuple[Band, ...]:
    if not isinstance(doc, list) or not doc:
        raise NetworkError(where, "must be a non-empty list of { up_to_stops, fare_fen }")
    bands: list[Band] = []
    for index, band_doc in enumerate(doc):
        here = f"{where}[{index}]"
        if not isinstance(band_doc, dict):
            raise NetworkError(here, "must be a table { up_to_stops, fare_fen }")
        _only(band_doc, {"up_to_stops", "fare_fen"}, here)
        band = Band(
            _int(band_doc, "up_to_stops", here, 1, MAX_STOPS),
            _int(band_doc, "fare_fen", here, 0, MAX_FARE_FEN),
        )
        if bands and band.up_to_stops <= bands[-1].up_to_stops:
            raise NetworkError(f"{here}.up_to_stops", "bands must go up in stops")
        if bands and band.fare_fen < bands[-1].fare_fen:
            raise NetworkError(f"{here}.fare_fen", "a longer trip may not cost less")
        bands.append(band)
    if bands[-1].up_to_stops < longest:
        raise NetworkError(
            f"{where}[{len(bands) - 1}].up_to_stops", f"the line's longest trip is {longest} stops"
        )
    return tuple(bands)


def _only(doc: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(doc) - keys)
    if unknown:
        raise NetworkError(f"{where}.{unknown[0]}", "unknown key")


def _table(doc: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise NetworkError(where, "must be a table")
    return value


def _str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise NetworkError(f"{where}.{key}", "must be a name of 1 to 64 characters")
    return value


def _int(
    doc: Mapping[str, Any], key: str, where: str, low: int, high: int, default: int | None = None
) -> int:
    value = doc.get(key, default)
    if value is None:
        raise NetworkError(f"{where}.{key}", "missing")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise NetworkError(f"{where}.{key}", f"must be an integer {low} to {high}")
    return value
