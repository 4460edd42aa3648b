"""The HSM's data protection: seal/unseal (AES-256-GCM under a ``D0`` key that stays inside), the keyed PAN
fingerprint, and an owner's keys made once even by two HSMs on one key store."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from pathlib import Path

import pytest

from citycard.hsm import (
    MAX_UNSEAL_MANY,
    Algorithm,
    HsmInputError,
    KeyHandle,
    KeyUsage,
    KeyUsageError,
    SealedDataError,
)
from citycard.hsm.protection import RecordProtection, dek_label, fingerprint_label, key_or_new
from citycard.hsm.soft import DirectoryKeyStore, SoftHsm

MASTER = bytes(range(32))

# The Galois/Counter Mode of Operation (McGrew and Viega, 2005, submitted to NIST for SP 800-38D), Appendix B,
# test case 16: AES-256, 96-bit IV, 60-byte plaintext, 20 bytes of additional authenticated data.
GCM_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
GCM_IV = bytes.fromhex("cafebabefacedbaddecaf888")
GCM_P = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
GCM_A = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_C = bytes.fromhex(
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
)
GCM_T = bytes.fromhex("76fc6ece0f4e1768cddf8853bb2d551b")


def test_seal_is_aes_256_gcm_with_the_iv_in_front_known_answer() -> None:
    hsm = SoftHsm(MASTER, random=lambda n: GCM_IV if n == 12 else os.urandom(n))  # the known answer's IV
    dek = hsm.import_components("dek", KeyUsage.DATA, [GCM_KEY], algorithm=Algorithm.AES)
    sealed = hsm.seal(dek, GCM_P, GCM_A)
    assert sealed == b"\x01" + GCM_IV + GCM_C + GCM_T
    assert hsm.unseal(dek, sealed, GCM_A) == GCM_P


def test_unseal_refuses_other_associated_data_an_altered_byte_another_key_and_garbage() -> None:
    hsm = SoftHsm(MASTER)
    dek = hsm.generate_key("dek", KeyUsage.DATA, algorithm=Algorithm.AES)
    other = hsm.generate_key("other", KeyUsage.DATA, algorithm=Algorithm.AES)
    sealed = hsm.seal(dek, b"0200 with a PAN", b"row 1")
    assert len(sealed) == len(b"0200 with a PAN") + 29
    assert sealed != hsm.seal(dek, b"0200 with a PAN", b"row 1")  # a fresh IV each time
    assert hsm.unseal(dek, sealed, b"row 1") == b"0200 with a PAN"
    altered = bytearray(sealed)
    altered[20] ^= 1
    for data, key, record in (
        (sealed, dek, b"row 2"),
        (bytes(altered), dek, b"row 1"),
        (sealed, other, b"row 1"),
        (b"\x02" + sealed[1:], dek, b"row 1"),
        (sealed[:28], dek, b"row 1"),
    ):
        with pytest.raises(SealedDataError):
            hsm.unseal(key, data, record)


def test_unseal_many_is_unseal_one_by_one_none_where_it_refuses() -> None:
    hsm = SoftHsm(MASTER)
    dek = hsm.generate_key("dek", KeyUsage.DATA, algorithm=Algorithm.AES)
    other = hsm.generate_key("other", KeyUsage.DATA, algorithm=Algorithm.AES)
    sealed = [hsm.seal(dek, f"PAN {n}".encode(), f"row {n}".encode()) for n in range(4)]
    altered = bytearray(sealed[1])
    altered[20] ^= 1
    items = [
        (sealed[0], b"row 0"),
        (bytes(altered), b"row 1"),  # altered
        (sealed[2], b"row 3"),  # another record's
        (hsm.seal(other, b"PAN x", b"row 4"), b"row 4"),  # another key
        (b"\x02" + sealed[3][1:], b"row 3"),  # not version 01
        (sealed[3][:28], b"row 3"),  # too short
        (memoryview(sealed[3]), b"row 3"),
        (hsm.seal(dek, b"", b"row 5"), b"row 5"),  # empty plaintext: b"", not None
    ]

    def one(data: bytes, record: bytes) -> bytes | None:
        try:
            return hsm.unseal(dek, data, record)
        except SealedDataError:
            return None

    expected = [b"PAN 0", None, None, None, None, None, b"PAN 3", b""]
    assert [one(data, record) for data, record in items] == expected
    assert hsm.unseal_many(dek, items) == expected
    assert hsm.unseal_many(dek, []) == []
    with pytest.raises(HsmInputError, match=f"at most {MAX_UNSEAL_MANY}"):
        hsm.unseal_many(dek, [items[0]] * (MAX_UNSEAL_MANY + 1))
    with pytest.raises(KeyUsageError):
        hsm.unseal_many(hsm.generate_key("mac", KeyUsage.MAC, algorithm=Algorithm.AES), items)


def test_record_protection_unseal_many_opens_every_key_version_as_unseal_does() -> None:
    hsm = SoftHsm(MASTER)
    protection = RecordProtection.open(hsm)
    first = protection.seal(b"under version 1", b"r1")
    assert protection.rotate() == 2
    second = protection.seal(b"under version 2", b"r2")
    unknown = b"\x02\x00\x09" + second[3:]  # names version 9, which the HSM does not hold
    items = [
        (second, b"r2"),
        (first, b"r1"),
        (first, b"r2"),
        (unknown, b"r2"),
        (b"garbage", b"r1"),
        (b"", b"r1"),
    ]

    def one(data: bytes, record: bytes) -> bytes | None:
        try:
            return protection.unseal(data, record)
        except SealedDataError:
            return None

    expected = [b"under version 2", b"under version 1", None, None, None, None]
    assert [one(data, record) for data, record in items] == expected
    assert protection.unseal_many(items) == expected
    assert protection.unseal_many([]) == []


def test_record_protection_unseal_many_splits_its_calls_under_the_hsm_s_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hsm = SoftHsm(MASTER)
    protection = RecordProtection.open(hsm)
    items = [(protection.seal(f"PAN {n}".encode(), f"r{n}".encode()), f"r{n}".encode()) for n in range(5)]
    calls: list[int] = []
    real = hsm.unseal_many

    def counted(dek: KeyHandle, chunk: list[tuple[bytes, bytes]]) -> list[bytes | None]:
        calls.append(len(chunk))
        return real(dek, chunk)

    monkeypatch.setattr(hsm, "unseal_many", counted)
    monkeypatch.setattr("citycard.hsm.protection.MAX_UNSEAL_MANY", 2)
    assert protection.unseal_many(items) == [f"PAN {n}".encode() for n in range(5)]
    assert calls == [2, 2, 1]


def test_only_an_aes_256_data_key_seals() -> None:
    hsm = SoftHsm(MASTER)
    mac = hsm.generate_key("mac", KeyUsage.MAC, algorithm=Algorithm.AES)
    tdea = hsm.generate_key("tdea-data", KeyUsage.DATA)
    aes128 = hsm.import_components("aes128", KeyUsage.DATA, [bytes(16)], algorithm=Algorithm.AES)
    for key in (mac, tdea, aes128):
        with pytest.raises(KeyUsageError):
            hsm.seal(key, b"x", b"")


def test_the_pan_fingerprint_is_hmac_sha_256_of_the_digits_under_the_fingerprint_key() -> None:
    hsm = SoftHsm(MASTER)
    secret = bytes(range(100, 132))
    hsm.import_components(fingerprint_label("acq"), KeyUsage.HMAC, [secret], algorithm=Algorithm.HMAC)
    protection = RecordProtection.open(hsm, "acq")
    expected = hmac.new(secret, b"PAN:6224242900000113", hashlib.sha256).hexdigest()
    assert protection.pan_fingerprint("6224242900000113") == expected
    assert protection.pan_fingerprint("6224242900000113F") == expected  # a BCD pad is not a digit
    assert protection.pan_fingerprint("6224242900000121") != expected
    for bad in ("62242429", "62242429000001130000", "6224x42900000113"):
        with pytest.raises(HsmInputError):
            protection.pan_fingerprint(bad)


def test_keys_used_from_many_threads_give_every_thread_the_right_answers() -> None:
    # The AES-GCM object of a data key and the keyed HMAC state of a fingerprint key are made once with
    # the key and shared by every thread of the HSM.
    hsm = SoftHsm(MASTER)
    secret = bytes(range(50, 82))
    hsm.import_components(fingerprint_label("acq"), KeyUsage.HMAC, [secret], algorithm=Algorithm.HMAC)
    protection = RecordProtection.open(hsm, "acq")
    pans = [f"62242429{i:08d}" for i in range(64)]
    errors: list[str] = []

    def work(offset: int) -> None:
        try:
            for i in range(200):
                pan = pans[(i + offset) % len(pans)]
                record = f"row {i} {offset}".encode()
                assert protection.unseal(protection.seal(pan.encode(), record), record) == pan.encode()
                expected = hmac.new(secret, b"PAN:" + pan.encode(), hashlib.sha256).hexdigest()
                assert protection.pan_fingerprint(pan) == expected
        except Exception as exc:  # collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_an_owners_keys_are_made_once_and_two_hsms_on_one_store_share_them(tmp_path: Path) -> None:
    first = SoftHsm(MASTER, DirectoryKeyStore(tmp_path))
    second = SoftHsm(MASTER, DirectoryKeyStore(tmp_path))  # another process on the same key store
    a = RecordProtection.open(first)
    b = RecordProtection.open(second)
    assert a.dek.kcv == b.dek.kcv and a.fingerprint_key.kcv == b.fingerprint_key.kcv
    assert (a.dek.usage, a.dek.algorithm, a.dek.exportable) == (KeyUsage.DATA, Algorithm.AES, False)
    assert second.unseal(b.dek, first.seal(a.dek, b"x", b"r"), b"r") == b"x"
    assert sorted(first.labels()) == sorted([dek_label("acquirer"), fingerprint_label("acquirer")])
    with pytest.raises(HsmInputError, match="D0/A"):  # a key of another kind under the label: refused
        key_or_new(first, fingerprint_label("acquirer"), KeyUsage.DATA, Algorithm.AES)


def test_a_key_store_never_overwrites_a_key_another_process_made_meanwhile(tmp_path: Path) -> None:
    store = DirectoryKeyStore(tmp_path)
    store.create("k", "BLOCK-ONE")
    with pytest.raises(FileExistsError):
        store.create("k", "BLOCK-TWO")
    assert store.load("k") == "BLOCK-ONE" and store.labels() == ["k"]
    assert [p.name for p in tmp_path.iterdir()] == ["k.kb"]  # no temporary file left
