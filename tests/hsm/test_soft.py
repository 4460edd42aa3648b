"""Software HSM: public known answers through the HSM, key usage refusals, persistence under the master
key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from citycard.crypto import cryptograms, des, mac
from citycard.crypto.derivation import derive_icc_mk_a, derive_pboc_session_key
from citycard.crypto.pin import pin_block_iso0
from citycard.crypto.rsa_cert import rsa_public_raw
from citycard.hsm import (
    MAX_CARDS_ACS,
    Algorithm,
    Hsm,
    HsmInputError,
    KeyExistsError,
    KeyNotFoundError,
    KeyStoreError,
    KeyUsage,
    KeyUsageError,
)
from citycard.hsm.soft import (
    DirectoryKeyStore,
    SoftHsm,
    create_master_key,
    ibm3624_natural_pin,
    ibm3624_offset,
    load_master_key,
    pin_validation_data,
    visa_pvv,
)

MASTER = bytes(range(32))
IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # REFERENCE.md, EMV Book 2 A1.4.1
PVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # psec tests/test_pin.py generate_visa_pvv


@pytest.fixture
def hsm() -> SoftHsm:
    return SoftHsm(MASTER)


def test_soft_hsm_is_an_hsm(hsm: SoftHsm) -> None:
    assert isinstance(hsm, Hsm)


def test_icc_master_key_public_vector(hsm: SoftHsm) -> None:
    # REFERENCE.md: EMV Book 2 A1.4.1 option A, pyemv kd.derive_icc_mk_a docstring.
    imk = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    assert imk.kcv == des.kcv(IMK).hex().upper()
    udk = hsm.derive_icc_key(imk, KeyUsage.EMV_AC, "12345678901234567", "01")
    assert udk.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"


def test_components_are_xored(hsm: SoftHsm) -> None:
    a = bytes(range(16))
    b = des.xor(IMK, a)
    handle = hsm.import_components("imk", KeyUsage.EMV_AC, [a, b])
    assert handle.kcv == des.kcv(IMK).hex().upper()


def _ac_data() -> bytes:
    values = {
        "9F02": bytes.fromhex("000000001000"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes(5),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261125"),
        "9C": b"\x00",
        "9F37": bytes.fromhex("11223344"),
        "82": bytes.fromhex("7C00"),
        "9F36": bytes.fromhex("0005"),
        "9F10": bytes.fromhex("07010103A00000010A01"),
    }
    return cryptograms.ac_input(values)


def test_arqc_verification_and_arpc(hsm: SoftHsm) -> None:
    pan, psn, atc = "6222021234567890128", "01", 5
    imk = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    sk = derive_pboc_session_key(derive_icc_mk_a(IMK, pan, psn), atc)
    data = _ac_data()
    arqc = cryptograms.generate_ac(sk, data)
    assert hsm.verify_arqc(imk, pan, psn, atc, data, arqc)
    assert not hsm.verify_arqc(imk, pan, psn, atc + 1, data, arqc)
    assert not hsm.verify_arqc(imk, pan, psn, atc, data, bytes(8))
    assert hsm.generate_arpc(imk, pan, psn, atc, arqc, b"00") == cryptograms.arpc_method1(sk, arqc, b"00")


def test_verify_card_acs_agrees_with_verify_arqc_one_by_one(hsm: SoftHsm) -> None:
    pan, psn = "6222021234567890128", "01"
    imk = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    udk = derive_icc_mk_a(IMK, pan, psn)
    data, other = _ac_data(), _ac_data()[::-1]
    good = {atc: cryptograms.generate_ac(derive_pboc_session_key(udk, atc), data) for atc in (5, 6, 7)}
    second = cryptograms.generate_ac(derive_pboc_session_key(udk, 8), other)  # over the second input
    checks = [
        (5, (data,), good[5]),
        (6, (data,), good[7]),  # another ATC's cryptogram
        (7, (data,), bytes(8)),  # forged
        (8, (data, other), second),
        (8, (data,), second),
    ]
    one_by_one = [
        any(hsm.verify_arqc(imk, pan, psn, atc, d, ac) for d in inputs) for atc, inputs, ac in checks
    ]
    assert hsm.verify_card_acs(imk, pan, psn, checks) == one_by_one == [True, False, False, True, False]
    assert hsm.verify_card_acs(imk, pan, psn, []) == []
    with pytest.raises(HsmInputError, match="8 bytes"):
        hsm.verify_card_acs(imk, pan, psn, [(5, (data,), good[5][:7])])
    with pytest.raises(KeyUsageError):
        hsm.verify_card_acs(hsm.generate_key("zpk2", KeyUsage.PIN_ENCRYPTION), pan, psn, checks)


Check = tuple[int, tuple[bytes, ...], bytes]


def _card_checks(pan: str, psn: str, atcs: list[int], seed: int) -> list[Check]:
    """Checks of one card as clearing makes them: the card's TC over ``_ac_data()`` (or over a second input
    tried after it), another ATC's, or forged, chosen by ``seed``."""
    udk = derive_icc_mk_a(IMK, pan, psn)
    data, other = _ac_data(), _ac_data()[::-1]
    out: list[Check] = []
    for n, atc in enumerate(atcs):
        kind = (seed + n) % 4
        over = other if kind == 1 else data
        ac = cryptograms.generate_ac(derive_pboc_session_key(udk, atc if kind != 2 else atc ^ 1), over)
        out.append((atc, (data, other) if kind == 1 else (data,), ac if kind != 3 else bytes(8)))
    return out


def test_verify_cards_acs_is_verify_card_acs_card_by_card(hsm: SoftHsm) -> None:
    imk = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    cards = [
        ("6222021234567890128", "01", _card_checks("6222021234567890128", "01", [5, 6, 7, 8, 9], 0)),
        ("6222021234567890128", "00", _card_checks("6222021234567890128", "01", [5, 6], 0)),  # another PSN
        ("622202123456789013F", "02", _card_checks("622202123456789013", "02", [1, 0xFFFF], 3)),  # padded
        ("6222021234567890144", "01", []),
        ("12345678901234567", "01", _card_checks("12345678901234567", "01", [3, 3, 4], 1)),
    ]
    one_by_one = [hsm.verify_card_acs(imk, pan, psn, checks) for pan, psn, checks in cards]
    assert hsm.verify_cards_acs(imk, cards) == one_by_one
    assert one_by_one == [
        [True, True, False, False, True],
        [False, False],
        [False, True],
        [],
        [True, False, False],
    ]
    assert hsm.verify_cards_acs(imk, []) == []


def test_verify_cards_acs_over_many_cards_agrees_with_verify_arqc() -> None:
    hsm = SoftHsm(MASTER)
    imk = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    cards = []
    for n in range(60):
        pan = f"62220212{n:010d}"
        atcs = [10 + n % 7 + k for k in range(n % 4)]
        cards.append((pan, f"{n % 3:02d}", _card_checks(pan, f"{n % 3:02d}", atcs, n)))
    expected = [
        [any(hsm.verify_arqc(imk, pan, psn, atc, d, ac) for d in inputs) for atc, inputs, ac in checks]
        for pan, psn, checks in cards
    ]
    assert hsm.verify_cards_acs(imk, cards) == expected
    assert any(any(r) for r in expected) and not all(all(r) for r in expected)


def test_verify_cards_acs_refuses_bad_input_and_verifies_nothing(
    hsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    imk = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    good = ("6222021234567890128", "01", _card_checks("6222021234567890128", "01", [5, 6], 0))
    macs: list[bytes] = []
    real = mac.retail_mac_once  # the DES layer under every verified cryptogram's MAC

    def counted(key: bytes, data: bytes) -> bytes:
        macs.append(key)
        return real(key, data)

    monkeypatch.setattr(mac, "retail_mac_once", counted)
    short = (good[0], good[1], [*good[2], (7, (b"x",), bytes(7))])
    bad = {
        "card 1: every cryptogram must be 8 bytes": [good, short],
        "card 2: PAN must be": [good, good, ("62220212345678901A8", "01", good[2])],
        "card 1: PSN must be": [good, ("6222021234567890128", "1", [])],
        "card 1: ATC 65536 ": [good, (good[0], good[1], [(0x10000, (b"x",), bytes(8))])],
        f"at most {MAX_CARDS_ACS} cryptograms": [
            good,
            (good[0], good[1], [(1, (b"x",), bytes(8))] * MAX_CARDS_ACS),
        ],
    }
    for message, cards in bad.items():
        with pytest.raises(HsmInputError, match=re.escape(message)):
            hsm.verify_cards_acs(imk, cards)
    with pytest.raises(KeyUsageError):
        hsm.verify_cards_acs(hsm.generate_key("zpk2", KeyUsage.PIN_ENCRYPTION), [good])
    assert macs == []  # nothing verified before an input was refused
    assert hsm.verify_cards_acs(imk, [good]) == [[True, True]]
    assert len(macs) == 3  # the second TC is over its second input: two MACs


def test_ec_load_script_and_script_command(hsm: SoftHsm) -> None:
    pan, psn, atc = "6222021234567890128", "01", 9
    smi = hsm.import_components("imk-smi", KeyUsage.EMV_SMI, [IMK[::-1]])
    sk = derive_pboc_session_key(derive_icc_mk_a(IMK[::-1], pan, psn), atc)
    arqc = bytes.fromhex("1234567890ABCDEF")
    script = hsm.ec_load_script(smi, pan, psn, atc, arqc, 50_000)
    assert script[:5] == bytes.fromhex("04DA9F790A")
    assert cryptograms.verify_script_mac(sk, script, atc, arqc)
    block = hsm.script_command(smi, pan, psn, atc, arqc, bytes.fromhex("841E0000"), b"")
    assert cryptograms.verify_script_mac(sk, block, atc, arqc)


def test_wrong_key_usage_is_refused(hsm: SoftHsm) -> None:
    ac = hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    pek = hsm.generate_key("zpk", KeyUsage.PIN_ENCRYPTION)
    arqc = bytes(8)
    with pytest.raises(KeyUsageError, match="MAC issuer scripts"):
        hsm.ec_load_script(ac, "6222021234567890128", "00", 1, arqc, 1)
    with pytest.raises(KeyUsageError):
        hsm.verify_arqc(pek, "6222021234567890128", "00", 1, b"x", arqc)
    with pytest.raises(KeyUsageError):
        hsm.generate_pvv(ac, ac, bytes(8), "6222021234567890128", 1)
    with pytest.raises(KeyUsageError):
        hsm.sign(ac, b"deny list")
    with pytest.raises(KeyUsageError, match="not exportable"):
        kek = hsm.generate_key("kek", KeyUsage.KEK, algorithm=Algorithm.AES)
        hsm.export_key_block(ac, kek)


def test_psec_visa_pvv_vectors() -> None:
    # psec tests/test_pin.py::test_generate_visa_pvv (public), PVK 0123456789ABCDEFFEDCBA9876543210.
    assert visa_pvv(PVK, "1122334455667788", 1, "4524") == "8523"
    assert visa_pvv(PVK, "1122334455667788", 2, "1912") == "3244"
    assert visa_pvv(PVK, "1122334455667718", 1, "0570") == "3144"
    assert visa_pvv(PVK, "1122334455667708", 1, "8299") == "4422"


def test_pin_translation_and_pvv(hsm: SoftHsm) -> None:
    pan = "4012345678909"
    clear = pin_block_iso0("1234", pan)
    assert clear.hex().upper() == "041274EDCBA9876F"  # REFERENCE.md, ISO 9564-1 format 0
    tpk_secret, zpk_secret = bytes(range(16)), bytes(range(16, 32))  # known: the test plays the PIN pad
    tpk = hsm.import_components("tpk", KeyUsage.PIN_ENCRYPTION, [tpk_secret])
    zpk = hsm.import_components("zpk", KeyUsage.PIN_ENCRYPTION, [zpk_secret])
    pvk = hsm.import_components("pvk", KeyUsage.PIN_VERIFICATION_VISA, [PVK])
    under_tpk = des.ecb_encrypt(tpk_secret, clear)
    assert hsm.encrypt_pin(tpk, "1234", pan) == under_tpk
    under_zpk = hsm.translate_pin_block(tpk, zpk, under_tpk, pan)
    assert under_zpk != under_tpk
    assert des.ecb_decrypt(zpk_secret, under_zpk) == clear
    pvv = hsm.generate_pvv(tpk, pvk, under_tpk, pan, 1)
    assert pvv == visa_pvv(PVK, pan, 1, "1234")
    assert hsm.verify_pin(zpk, pvk, under_zpk, pan, 1, pvv)
    wrong = des.ecb_encrypt(tpk_secret, pin_block_iso0("1235", pan))
    assert not hsm.verify_pin(tpk, pvk, wrong, pan, 1, pvv)
    with pytest.raises(HsmInputError):
        hsm.verify_pin(tpk, pvk, des.ecb_encrypt(tpk_secret, bytes(8)), pan, 1, pvv)


def test_psec_ibm3624_vectors() -> None:
    # psec tests/test_pin.py::test_generate_ibm3624_offset / _pin (public): PVK as above,
    # decimalisation table 1234567890123456, validation data 1122334455667788 (and its first 14 digits + FF).
    table = "1234567890123456"
    assert ibm3624_natural_pin(PVK, "1122334455667788", 4, table) == "4524"
    assert ibm3624_offset(PVK, "1122334455667788", "1234", table) == "7710"
    assert ibm3624_offset(PVK, "1122334455667788", "0000", table) == "6586"
    assert ibm3624_offset(PVK, "1122334455667788", "5635", table) == "1111"
    assert ibm3624_offset(PVK, "11223344556677FF", "5518", table) == "0000"


def test_pin_offset_verifies_every_digit_of_the_pin(hsm: SoftHsm) -> None:
    """A Visa PVV covers the first 4 PIN digits (147200 passes for 147258); the IBM 3624 offset all."""
    pan = "6212260000000000018"
    zpk_secret = bytes(range(16, 32))
    zpk = hsm.import_components("zpk", KeyUsage.PIN_ENCRYPTION, [zpk_secret])
    visa = hsm.import_components("pvk", KeyUsage.PIN_VERIFICATION_VISA, [PVK])
    ibm = hsm.import_components("pvk-3624", KeyUsage.PIN_VERIFICATION_IBM3624, [PVK])

    def block(pin: str) -> bytes:
        return des.ecb_encrypt(zpk_secret, pin_block_iso0(pin, pan))

    pvv = hsm.generate_pvv(zpk, visa, block("147258"), pan, 1)
    assert hsm.verify_pin(zpk, visa, block("147200"), pan, 1, pvv)  # the weakness this offset removes
    offset = hsm.generate_pin_offset(zpk, ibm, block("147258"), pan)
    assert len(offset) == 6 and offset == ibm3624_offset(PVK, pin_validation_data(pan), "147258")
    assert (
        pin_validation_data(pan) == "1226000000000001"
        and pin_validation_data("4012345678909") == "401234567890FFFF"
    )
    assert hsm.verify_pin_offset(zpk, ibm, block("147258"), pan, offset)
    for wrong in ("147200", "147259", "047258", "1472580", "14725"):
        assert not hsm.verify_pin_offset(zpk, ibm, block(wrong), pan, offset), wrong
    with pytest.raises(KeyUsageError):
        hsm.verify_pin_offset(zpk, visa, block("147258"), pan, offset)
    with pytest.raises(HsmInputError):
        hsm.verify_pin_offset(zpk, ibm, block("147258"), pan, "12AB")


def test_pin_chosen_before_the_pan_is_known(hsm: SoftHsm) -> None:
    """Instant issuance: ISO 9564 format 1 under the zone key; its offset matches the format-0 one."""
    pan = "6212260000000000018"
    zpk = hsm.generate_key("zpk", KeyUsage.PIN_ENCRYPTION)
    ibm = hsm.import_components("pvk-3624", KeyUsage.PIN_VERIFICATION_IBM3624, [PVK])
    iso1 = hsm.encrypt_pin_iso1(zpk, "135790")
    assert iso1 != hsm.encrypt_pin_iso1(zpk, "135790")  # random fill
    assert hsm.pin_for_card_image(zpk, iso1) == "135790"
    offset = hsm.generate_pin_offset(zpk, ibm, iso1, pan, iso_format=1)
    assert offset == hsm.generate_pin_offset(zpk, ibm, hsm.encrypt_pin(zpk, "135790", pan), pan)
    with pytest.raises(HsmInputError):  # a format-0 block is not taken for format 1, nor the reverse
        hsm.pin_for_card_image(zpk, hsm.encrypt_pin(zpk, "135790", pan))
    with pytest.raises(HsmInputError):
        hsm.generate_pin_offset(zpk, ibm, iso1, pan)
    with pytest.raises(KeyUsageError):
        hsm.pin_for_card_image(ibm, iso1)


def test_pin_change_script_carries_the_pin_to_the_card(hsm: SoftHsm) -> None:
    from citycard.crypto.pin import PinChangeFormat, decrypt_pin_change_data

    pan, psn, atc, arqc = "6222021234567890128", "01", 7, bytes.fromhex("1234567890ABCDEF")
    smi = hsm.import_components("imk-smi", KeyUsage.EMV_SMI, [IMK[::-1]])
    smc = hsm.import_components("imk-smc", KeyUsage.EMV_SMC, [IMK])
    store_secret = bytes(range(16))
    store = hsm.import_components("pin-store", KeyUsage.PIN_ENCRYPTION, [store_secret])
    stored = des.ecb_encrypt(store_secret, pin_block_iso0("246810", pan))
    script = hsm.pin_change_script(smi, smc, pan, psn, atc, arqc, store, stored)
    assert script[:5] == bytes.fromhex("842400020C")
    mac_key = derive_pboc_session_key(derive_icc_mk_a(IMK[::-1], pan, psn), atc)
    assert cryptograms.verify_script_mac(mac_key, script, atc, arqc)
    enc_key = derive_pboc_session_key(derive_icc_mk_a(IMK, pan, psn), atc)
    pin = decrypt_pin_change_data(enc_key, script[5:13], pin_format=PinChangeFormat.ISO2_ECB)
    assert pin == "246810"
    with pytest.raises(KeyUsageError):
        hsm.pin_change_script(smc, smi, pan, psn, atc, arqc, store, stored)


def test_rsa_certificate_signing_and_signatures(hsm: SoftHsm) -> None:
    ca = hsm.generate_rsa_key("issuer-cert", KeyUsage.CA, 1024, public_exponent=3)
    public = hsm.public_key(ca)
    block = b"\x6a" + bytes(range(1, 127)) + b"\xbc"
    signed = hsm.sign_raw(ca, block)
    assert rsa_public_raw(public.n, public.e, signed) == block
    signer = hsm.generate_rsa_key("denylist", KeyUsage.SIGNATURE, 1024)
    sig = hsm.sign(signer, b"deny list v1")
    pub = hsm.public_key(signer)
    rsa.RSAPublicNumbers(pub.e, pub.n).public_key().verify(
        sig, b"deny list v1", padding.PKCS1v15(), hashes.SHA256()
    )
    with pytest.raises(KeyUsageError):
        hsm.sign_raw(signer, block)
    with pytest.raises(KeyUsageError):
        hsm.generate_rsa_key("x", KeyUsage.EMV_AC, 1024)


def test_keys_persist_encrypted_and_survive_restart(tmp_path: Path) -> None:
    store = DirectoryKeyStore(tmp_path / "keys")
    first = SoftHsm(MASTER, store)
    handle = first.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    text = (tmp_path / "keys" / "imk-ac.kb").read_text()
    assert text.startswith("D") and IMK.hex().upper() not in text.upper()
    second = SoftHsm(MASTER, DirectoryKeyStore(tmp_path / "keys"))
    assert second.get("imk-ac") == handle
    with pytest.raises(KeyExistsError):
        second.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    with pytest.raises(KeyStoreError, match="wrong one"):  # the only block: altered or wrong key
        SoftHsm(bytes(32), DirectoryKeyStore(tmp_path / "keys")).get("imk-ac")
    with pytest.raises(KeyNotFoundError):
        second.get("nothing")


def test_export_import_under_kek(hsm: SoftHsm) -> None:
    kek_value = bytes(range(100, 132))  # shared with the peer by a key ceremony (components)
    kek = hsm.import_components("kek", KeyUsage.KEK, [kek_value], algorithm=Algorithm.AES)
    zpk = hsm.generate_key("zpk", KeyUsage.PIN_ENCRYPTION, exportable=True)
    block = hsm.export_key_block(zpk, kek)
    assert block.startswith("D") and block[5:7] == "P0" and block[11] == "E"
    peer = SoftHsm(bytes(32))
    peer_kek = peer.import_components("kek", KeyUsage.KEK, [kek_value], algorithm=Algorithm.AES)
    imported = peer.import_key_block("zpk", block, peer_kek)
    assert imported.kcv == zpk.kcv and imported.usage == KeyUsage.PIN_ENCRYPTION
    tdes_kek = peer.import_components("kek-t", KeyUsage.KEK, [IMK])
    with pytest.raises(KeyUsageError, match="AES"):
        peer.import_key_block("zpk2", block, tdes_kek)
    wrong = peer.import_components("kek-w", KeyUsage.KEK, [bytes(32)], algorithm=Algorithm.AES)
    with pytest.raises(HsmInputError, match="authentication failed"):
        peer.import_key_block("zpk3", block, wrong)


def test_master_key_from_environment_or_file(tmp_path: Path) -> None:
    assert load_master_key("00" * 32, tmp_path / "none") == bytes(32)
    made = create_master_key(tmp_path / "hsm" / "master.key")
    assert len(made) == 32 and load_master_key("", tmp_path / "hsm" / "master.key") == made
    assert (tmp_path / "hsm" / "master.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyStoreError, match="exists already"):  # never overwritten
        create_master_key(tmp_path / "hsm" / "master.key")
    assert load_master_key("", tmp_path / "hsm" / "master.key") == made


def test_key_blocks_and_the_master_key_are_synced_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a key block was renamed into place unsynced; a power loss could lose a bank's keys."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def created(directory: Path, name: str) -> list[str]:
        """What citycard.durable.create_new syncs: its temporary file (then linked to ``name``: the same
        inode), then the directory."""
        [temporary] = synced[:1]
        assert re.fullmatch(rf"\.{re.escape(name)}\.{os.getpid()}\.[0-9a-f]{{8}}\.new", Path(temporary).name)
        assert Path(temporary).parent == directory and (directory / name).is_file()
        return [temporary, str(directory)]

    monkeypatch.setattr(os, "fsync", fsync)
    create_master_key(tmp_path / "hsm" / "master.key")
    assert synced == created(tmp_path / "hsm", "master.key")
    synced.clear()
    SoftHsm(MASTER, DirectoryKeyStore(tmp_path / "hsm" / "keys")).import_components(
        "imk", KeyUsage.EMV_AC, [IMK]
    )
    assert synced == created(tmp_path / "hsm" / "keys", "imk.kb")  # a new key: created, never overwritten


def test_a_missing_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="does not exist"):
        load_master_key("", tmp_path / "other.key")
    assert not (tmp_path / "other.key").exists()
    with pytest.raises(KeyStoreError, match="no HSM master key"):
        load_master_key("")


def test_an_altered_block_and_a_wrong_master_key_are_told_apart(tmp_path: Path) -> None:
    """Before: a KeyBlockError (a ValueError, which the CLI showed as a traceback); now a KeyStoreError
    (an HsmError) that says whether the block was altered or the master key is not theirs."""
    hsm = SoftHsm(MASTER, DirectoryKeyStore(tmp_path / "keys"))
    hsm.import_components("imk-ac", KeyUsage.EMV_AC, [IMK])
    hsm.import_components("imk-smi", KeyUsage.EMV_SMI, [IMK])
    path = tmp_path / "keys" / "imk-ac.kb"
    block = path.read_text().strip()
    path.write_text(block[:20] + ("0" if block[20] != "0" else "1") + block[21:] + "\n")
    with pytest.raises(
        KeyStoreError, match="'imk-ac' does not verify under the HSM master key: it was altered"
    ):
        SoftHsm(MASTER, DirectoryKeyStore(tmp_path / "keys")).get("imk-ac")
    with pytest.raises(KeyStoreError, match="not the one they were made under"):
        SoftHsm(bytes(32), DirectoryKeyStore(tmp_path / "keys")).get("imk-smi")
    path.write_bytes(b"D\xff" + block.encode()[2:])
    with pytest.raises(KeyStoreError, match="not ASCII"):
        SoftHsm(MASTER, DirectoryKeyStore(tmp_path / "keys")).get("imk-ac")


def test_keyed_hash_is_hmac_sha256_under_an_m7_key(hsm: SoftHsm) -> None:
    import hashlib
    import hmac

    secret = bytes(range(32))
    key = hsm.import_components("id", KeyUsage.HMAC, [secret], algorithm=Algorithm.HMAC)
    digest = hsm.keyed_hash(key, b"11010519491231002X")
    assert digest == hmac.new(secret, b"11010519491231002X", hashlib.sha256).digest()
    assert hsm.generate_key("id2", KeyUsage.HMAC, algorithm=Algorithm.HMAC).kcv != key.kcv
    with pytest.raises(KeyUsageError):
        hsm.keyed_hash(hsm.generate_key("zpk", KeyUsage.PIN_ENCRYPTION), b"x")
    with pytest.raises(KeyUsageError):
        hsm.generate_key("bad", KeyUsage.HMAC)  # an M7 key is an HMAC key (algorithm H), nothing else


def test_personalisation_keys_come_from_the_hsm(hsm: SoftHsm) -> None:
    from citycard.chip.personalise import IssuerPublicKeyData
    from citycard.crypto.rsa_cert import recover_icc_certificate, recover_static_data
    from citycard.hsm.personalisation import HsmPersonalisationKeys

    ac = hsm.import_components("ac", KeyUsage.EMV_AC, [IMK])
    smi = hsm.generate_key("smi", KeyUsage.EMV_SMI)
    smc = hsm.generate_key("smc", KeyUsage.EMV_SMC)
    issuer = hsm.generate_rsa_key("issuer", KeyUsage.CA, 1024, public_exponent=3)
    keys = HsmPersonalisationKeys(
        hsm,
        imk_ac=ac,
        imk_smi=smi,
        imk_smc=smc,
        issuer_key=issuer,
        certify_issuer=lambda public, ident: IssuerPublicKeyData(0xF1, b"c", b"", public.exponent),
    )
    udks = keys.card_udks("12345678901234567", "01")
    assert udks.ac.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"  # EMV Book 2 A1.4.1 vector
    assert udks.mac != udks.enc
    icc = keys.generate_icc_key()
    static = b"static data"
    cert, remainder = keys.certify_icc_key(icc.public, "6212260000000000018", "1136", static)
    recovered = recover_icc_certificate(hsm.public_key(issuer), cert, remainder, icc.public.exponent, static)
    assert recovered.public_key == icc.public and recovered.pan.startswith("6212260000000000018")
    signed = keys.sign_static_data(b"\xda\xc0", static)
    assert recover_static_data(hsm.public_key(issuer), signed, static).data_authentication_code == b"\xda\xc0"
    with pytest.raises(KeyUsageError):
        HsmPersonalisationKeys(
            hsm,
            imk_ac=smi,
            imk_smi=smi,
            imk_smc=smc,
            issuer_key=issuer,
            certify_issuer=lambda p, i: None,  # type: ignore[arg-type, return-value]
        ).card_udks("12345678901234567", "01")


def test_issuer_certificate_signed_by_a_ca_key_in_the_hsm(hsm: SoftHsm) -> None:
    """EMV Book 2 §5.1: the CA key in the HSM certifies an issuer key; the terminal-side recovery of
    ``citycard.crypto.rsa_cert`` (§5.3) accepts it and finds the issuer's key in it."""
    from citycard.crypto.rsa_cert import recover_issuer_certificate

    ca = hsm.generate_rsa_key("scheme-ca", KeyUsage.CA, 1152, public_exponent=3)
    issuer = hsm.generate_rsa_key("icbc-issuer-rsa", KeyUsage.CA, 1024, public_exponent=3)
    cert, remainder = hsm.emv_issuer_certificate(
        ca, hsm.public_key(issuer), "622202", "1230", b"\x00\x00\x07"
    )
    recovered = recover_issuer_certificate(hsm.public_key(ca), cert, remainder, b"\x03")
    assert recovered.public_key == hsm.public_key(issuer)
    assert recovered.issuer_identifier == "622202" and recovered.serial == b"\x00\x00\x07"
    signer = hsm.generate_rsa_key("deny", KeyUsage.SIGNATURE, 1024)
    with pytest.raises(KeyUsageError):  # a signature key is not a CA key
        hsm.emv_issuer_certificate(signer, hsm.public_key(issuer), "622202", "1230", b"\x00\x00\x07")
    with pytest.raises(HsmInputError):
        hsm.emv_issuer_certificate(ca, hsm.public_key(issuer), "62", "1230", b"\x00\x00\x07")
