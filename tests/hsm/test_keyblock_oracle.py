"""Our TR-31 version D key blocks against an independent implementation (psec, the "test oracle" REVIEW.md
suggests): a block we wrap unwraps in psec to the same key and header, and one psec wraps (its own random
padding, its masked key length) unwraps here to the same; for any key, KBPK size and header."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from psec import tr31

from citycard.hsm.keyblock import Header, unwrap, wrap

USAGES = ["P0", "M3", "K0", "B0", "D0", "E0", "E1", "E2", "E6", "V2"]
headers = st.builds(
    Header,
    usage=st.sampled_from(USAGES),
    algorithm=st.sampled_from(["A", "T"]),
    mode=st.sampled_from(["B", "C", "D", "E", "G", "N", "V", "X"]),
    version=st.sampled_from(["00", "01", "99"]),
    exportability=st.sampled_from(["E", "N", "S"]),
)
kbpks = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def _fields(h: tr31.Header) -> tuple[str, ...]:
    return (h.version_id, h.key_usage, h.algorithm, h.mode_of_use, h.version_num, h.exportability)


@settings(max_examples=200)
@given(kbpks, headers, keys)
def test_a_block_we_wrap_unwraps_in_psec(kbpk: bytes, header: Header, key: bytes) -> None:
    theirs, key_out = tr31.unwrap(kbpk, wrap(kbpk, header, key))
    assert key_out == key
    assert _fields(theirs) == (
        "D",
        header.usage,
        header.algorithm,
        header.mode,
        header.version,
        header.exportability,
    )


@settings(max_examples=200)
@given(kbpks, headers, keys)
def test_a_block_psec_wraps_unwraps_here(kbpk: bytes, header: Header, key: bytes) -> None:
    theirs = tr31.Header(
        "D", header.usage, header.algorithm, header.mode, header.version, header.exportability
    )
    assert unwrap(kbpk, tr31.wrap(kbpk, theirs, key)) == (header, key)
