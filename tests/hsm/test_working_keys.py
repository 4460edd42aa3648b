"""Sign-on working keys in the software HSM: a PIK and a MAK made by the host under the terminal master
key (TMK), imported by the terminal's HSM after their check value, and the field 64 MAC under the MAK."""

from __future__ import annotations

import pytest

from citycard.crypto import des
from citycard.crypto.pos_mac import pos_mac
from citycard.hsm import Algorithm, HsmInputError, KeyUsage, KeyUsageError
from citycard.hsm.soft import SoftHsm

TMK_A = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TMK_B = bytes.fromhex("11111111111111112222222222222222")
TMK = des.xor(TMK_A, TMK_B)
"""The terminal master key, as two custodians enter it at the host and at the terminal."""
BLOCK = bytes.fromhex("0200702406C020C09A11") + bytes(range(40))


def _pair() -> tuple[SoftHsm, SoftHsm]:
    host, terminal = SoftHsm(bytes(range(32))), SoftHsm(bytes(range(1, 33)))
    for hsm in (host, terminal):
        hsm.import_components("tmk-10000019", KeyUsage.KEK, [TMK_A, TMK_B])
    return host, terminal


def test_a_mak_made_by_the_host_reaches_the_terminal_under_the_tmk_and_both_mac_alike() -> None:
    host, terminal = _pair()
    made = host.generate_working_key("mak-10000019", host.get("tmk-10000019"), KeyUsage.MAC_X9_19)
    clear = des.ecb_decrypt(TMK, made.encrypted)  # what only the two HSMs can compute
    assert made.encrypted != clear and des.check_parity(clear)
    assert made.check_value == des.kcv(clear, 4)
    assert made.handle.kcv == des.kcv(clear).hex().upper() and not made.handle.exportable

    mak = terminal.import_working_key(
        "mak", terminal.get("tmk-10000019"), KeyUsage.MAC_X9_19, made.encrypted, made.check_value
    )
    assert mak.kcv == made.handle.kcv and mak.usage is KeyUsage.MAC_X9_19
    assert terminal.pos_mac(mak, BLOCK) == host.pos_mac(made.handle, BLOCK) == pos_mac(clear, BLOCK)


def test_a_pik_made_at_sign_on_encrypts_pins_the_host_can_translate() -> None:
    host, terminal = _pair()
    made = host.generate_working_key("pik-10000019", host.get("tmk-10000019"), KeyUsage.PIN_ENCRYPTION)
    pik = terminal.import_working_key(
        "pik", terminal.get("tmk-10000019"), KeyUsage.PIN_ENCRYPTION, made.encrypted, made.check_value
    )
    zpk = host.generate_key("zpk", KeyUsage.PIN_ENCRYPTION)
    block = terminal.encrypt_pin(pik, "123456", "6224242900000113")
    translated = host.translate_pin_block(made.handle, zpk, block, "6224242900000113")
    assert translated == host.encrypt_pin(zpk, "123456", "6224242900000113")


def test_a_working_key_whose_check_value_does_not_match_is_refused_and_not_kept() -> None:
    host, terminal = _pair()
    made = host.generate_working_key("mak-10000019", host.get("tmk-10000019"), KeyUsage.MAC_X9_19)
    other_tmk = terminal.import_components("tmk-other", KeyUsage.KEK, [TMK_A])
    with pytest.raises(HsmInputError, match="check value does not match"):
        terminal.import_working_key("mak", other_tmk, KeyUsage.MAC_X9_19, made.encrypted, made.check_value)
    damaged = bytes([made.check_value[0] ^ 1]) + made.check_value[1:]
    with pytest.raises(HsmInputError, match="check value does not match"):
        terminal.import_working_key(
            "mak", terminal.get("tmk-10000019"), KeyUsage.MAC_X9_19, made.encrypted, damaged
        )
    assert "mak" not in terminal.labels()


def test_working_keys_and_the_pos_mac_keep_to_their_usages() -> None:
    host, _ = _pair()
    tmk = host.get("tmk-10000019")
    with pytest.raises(KeyUsageError, match=r"PIK \(P0\) or a MAK"):
        host.generate_working_key("data", tmk, KeyUsage.DATA)
    not_a_kek = host.generate_key("zpk", KeyUsage.PIN_ENCRYPTION)
    with pytest.raises(KeyUsageError):
        host.generate_working_key("mak", not_a_kek, KeyUsage.MAC_X9_19)
    pik = host.generate_working_key("pik", tmk, KeyUsage.PIN_ENCRYPTION).handle
    with pytest.raises(KeyUsageError):
        host.pos_mac(pik, BLOCK)
    aes_kek = host.generate_key("kek-aes", KeyUsage.KEK, algorithm=Algorithm.AES)
    with pytest.raises(KeyUsageError, match="must be a 3DES key"):
        host.generate_working_key("mak", aes_kek, KeyUsage.MAC_X9_19)
    assert "mak" not in host.labels()


def test_a_new_sign_on_replaces_the_mak_and_the_next_macs_are_under_the_new_one() -> None:
    # The MAC contexts are kept per key value, not per label: a MAK replaced under its label is never
    # MACed with under its old value.
    host, _ = _pair()
    tmk = host.get("tmk-10000019")
    first = host.generate_working_key("mak-10000019", tmk, KeyUsage.MAC_X9_19)
    assert host.pos_mac(first.handle, BLOCK) == pos_mac(des.ecb_decrypt(TMK, first.encrypted), BLOCK)
    second = host.generate_working_key("mak-10000019", tmk, KeyUsage.MAC_X9_19, replace=True)
    clear = des.ecb_decrypt(TMK, second.encrypted)
    for block in (BLOCK, BLOCK[:9], BLOCK + b"\x01"):
        assert host.pos_mac(host.get("mak-10000019"), block) == pos_mac(clear, block)
