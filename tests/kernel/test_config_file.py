"""The terminal's TOML configuration (citycard.kernel.config.parse_config) refuses, with a ConfigError
naming the key, whatever is not of the key's type: a quoted "false" is not false (REVIEW.md: bool("false")
is True), a number is not a terminal id, a value is not a table."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.kernel.config import ConfigError, TerminalConfig, parse_config

_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["false", "true", "0", "12345678", "9F02", "A0000003330101", "1979-05-27"]),
)
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3))


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string, as JSON writes it
    return repr(value)


_KEYS = {
    "terminal": [
        "country", "currency", "type", "capabilities", "ttq", "terminal_id", "merchant_id", "merchant_name",
        "ifd_serial", "floor_limit_fen", "ec_support", "cardholder_confirmation", "select_blocked",
    ],
    "aid": ["aid", "partial", "app_version", "label"],
    "tac": ["denial", "online", "default"],
    "validator": ["double_tap_window_s"],
    "exception_file": ["pans", "updated", "max_age_s"],
}  # fmt: skip


@settings(max_examples=300)
@given(st.sampled_from(sorted(_KEYS)), st.data())
def test_any_value_of_any_type_is_a_config_or_a_config_error(section: str, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(_KEYS[section]))
    value = data.draw(_VALUES)
    header = "[[aid]]" if section == "aid" else f"[{section}]"
    extra = 'aid = "A000000333010101"\n' if section == "aid" and key != "aid" else ""
    text = f"{header}\n{extra}{key} = {_toml(value)}\n"
    try:
        config = parse_config(text)
    except ConfigError as exc:  # names the key, or (a string TOML cannot hold) where the TOML is bad
        assert key in str(exc) or section in str(exc) or "(at line " in str(exc), (text, exc)
    else:
        assert isinstance(config, TerminalConfig)


@pytest.mark.parametrize(
    "text",
    [
        '[[aid]]\naid = "A000000333010101"\npartial = "false"\n',
        '[[aid]]\naid = "A000000333010101"\npartial = 0\n',
        "[terminal]\nterminal_id = 12345678\n",
        '[terminal]\nmerchant_name = ["a"]\n',
        '[[aid]]\naid = "A000000333010101"\nlabel = 5\n',
        "terminal = 5\n",
        'aid = "A000000333010101"\n',
        "tac = [1]\n",
        "[terminal]\ncountry = 156\n",
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(text)


def test_an_aid_s_partial_selection_is_read_as_written() -> None:
    config = parse_config('[[aid]]\naid = "A000000333010101"\npartial = false\n')
    assert [a.partial for a in config.aids] == [False]
    assert [a.partial for a in parse_config('[[aid]]\naid = "A000000333"\n').aids] == [True]
