"""The fare table: the documented example parses; every kind of bad document is one NetworkError that
names the field."""

from __future__ import annotations

import pytest

from citycard.transit import NetworkError, parse_network


def test_the_documented_example(network):
    assert network.name == "Citycard Bus" and sorted(network.lines) == [1, 5, 12]
    k12 = network.lines[12]
    assert k12.distance and k12.max_fare_fen == 500 and len(k12.stops) == 7
    assert [k12.fare_between(1, n) for n in range(1, 8)] == [200, 200, 200, 300, 300, 500, 500]
    assert k12.fare_between(7, 1) == 500  # either direction
    assert network.lines[1].max_fare_fen == 200 and not network.lines[1].distance
    assert k12.stop_number("Museum") == 2 and k12.stop_number("7") == 7 and k12.stop_number("8") is None
    assert network.transfer.window_s == 5400 and network.concessions.percent("elderly") == 0
    assert network.concessions.percent("none") == 100


BANDS = "bands = [{up_to_stops = %d, fare_fen = %d}, {up_to_stops = %d, fare_fen = %d}]"
FLAT = '[network]\nname = "N"\n[[lines]]\nid = 1\nname = "L"\nfare_fen = 200\n'


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[network", "document"),
        ('[network]\nname = "N"\n', "lines"),
        ("[[lines]]\nid = 1\nname = 'L'\nfare_fen = 1\n", "network"),
        (FLAT + "[bogus]\n", "document.bogus"),
        (FLAT.replace("fare_fen = 200", "fare_fen = -1"), "lines[0].fare_fen"),
        (FLAT.replace("fare_fen = 200", 'fare_fen = "2.00"'), "lines[0].fare_fen"),
        (FLAT.replace("fare_fen = 200", "fare_fen = 2.5"), "lines[0].fare_fen"),
        (FLAT.replace("fare_fen = 200", "fare_fen = true"), "lines[0].fare_fen"),
        (FLAT.replace("id = 1", "id = 0"), "lines[0].id"),
        (FLAT.replace("id = 1", "id = 70000"), "lines[0].id"),
        (FLAT + FLAT.split("\n", 2)[2], "lines[1].id"),
        (FLAT.replace("fare_fen = 200", "fare_fen = 200\nbands = []"), "lines[0]"),
        (FLAT.replace("fare_fen = 200", ""), "lines[0]"),
        (FLAT.replace("fare_fen = 200", 'stops = ["A", "B"]\nbands = []'), "lines[0].bands"),
        (
            FLAT.replace(
                "fare_fen = 200", 'stops = ["A", "B", "C"]\nbands = [{up_to_stops = 1, fare_fen = 2}]'
            ),
            "lines[0].bands[0].up_to_stops",
        ),
        (
            FLAT.replace(
                "fare_fen = 200",
                'stops = ["A", "B", "C"]\n' + BANDS % (1, 5, 2, 4),
            ),
            "lines[0].bands[1].fare_fen",
        ),
        (
            FLAT.replace(
                "fare_fen = 200",
                'stops = ["A", "B", "C"]\n' + BANDS % (2, 5, 2, 6),
            ),
            "lines[0].bands[1].up_to_stops",
        ),
        (
            FLAT.replace("fare_fen = 200", 'stops = ["A"]\nbands = [{up_to_stops = 1, fare_fen = 5}]'),
            "lines[0].stops",
        ),
        (FLAT.replace("fare_fen = 200", 'fare_fen = 200\nstops = ["A", "A"]'), "lines[0].stops"),
        (FLAT.replace("fare_fen = 200", 'fare_fen = 200\nstops = ["A", "2"]'), "lines[0].stops"),
        (FLAT.replace("fare_fen = 200", "fare_fen = 200\ncolour = 'red'"), "lines[0].colour"),
        (FLAT + "[concessions]\nelderly = 101\n", "concessions.elderly"),
        (FLAT + "[concessions]\npensioner = 0\n", "concessions.pensioner"),
        (FLAT + "[transfer]\nwindow_s = -5\n", "transfer.window_s"),
        (
            FLAT.replace('name = "N"', 'name = "N"\ndaily_cap_fen = 500\nmonthly_cap_fen = 400'),
            "network.monthly_cap_fen",
        ),
        (FLAT.replace('name = "N"', 'name = ""'), "network.name"),
    ],
)
def test_a_bad_fare_table_is_one_typed_error_naming_the_field(text, where):
    with pytest.raises(NetworkError) as info:
        parse_network(text)
    assert info.value.where == where, str(info.value)
    assert str(info.value).startswith(f"fare table {where}: ")
