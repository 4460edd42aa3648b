"""PBOC electronic deposit / electronic purse (ED/EP) cryptography: session keys, MAC1, MAC2 and TAC of
load (圈存) and purchase (消费), as the older PBOC e-purse (JR/T 0025.2, PBOC 2.0 part 2) and the city-transit
CPU cards with a PSAM use them.

- MAC: single-DES CBC-MAC under an 8-byte session key, zero IV, padding ``80 00…`` (always), the first 4
  bytes (ISO/IEC 9797-1 algorithm 1, padding method 2, with a single-length key).
- Load session key SESLK = 3DES(DLK, pseudo-random (4) ‖ online transaction serial (2) ‖ ``8000``).
  MAC1 over old balance (4) ‖ amount (4) ‖ transaction type (1) ‖ terminal id (6); MAC2 over amount ‖ type ‖
  terminal id ‖ date (4) ‖ time (3); the card answers CREDIT FOR LOAD with a TAC over new balance (4) ‖
  online serial (2) ‖ amount ‖ type ‖ terminal id ‖ date ‖ time.
- Purchase session key SESPK = 3DES(DPK, pseudo-random (4) ‖ offline transaction serial (2) ‖ the last 2
  bytes of the terminal transaction serial). MAC1 (terminal) over amount ‖ type ‖ terminal id ‖ date ‖
  time; MAC2 (card) over amount; TAC over amount ‖ type ‖ terminal id ‖ terminal serial (4) ‖ date ‖ time.
- TAC key = left half of DTK ⊕ right half (single DES).

Amounts and balances are 4-byte unsigned big-endian integers in fen; date ``YYYYMMDD`` and time ``hhmmss``
are BCD. Transaction types: ``01`` ED load, ``02`` EP load, ``05`` ED purchase, ``06`` EP purchase,
``09`` composite purchase (UPDATE CAPP DATA CACHE).
"""

from __future__ import annotations

import hmac

from .des import ecb_encrypt, xor
from .mac import mac_alg1

__all__ = [
    "TX_ED_LOAD",
    "TX_ED_PURCHASE",
    "TX_EP_COMPOSITE",
    "TX_EP_LOAD",
    "TX_EP_PURCHASE",
    "load_mac1",
    "load_mac2",
    "load_session_key",
    "load_tac",
    "purchase_mac1",
    "purchase_mac2",
    "purchase_session_key",
    "purchase_tac",
    "purse_mac",
    "tac_key",
    "verify_purse_mac",
]

TX_ED_LOAD, TX_EP_LOAD, TX_ED_PURCHASE, TX_EP_PURCHASE, TX_EP_COMPOSITE = 0x01, 0x02, 0x05, 0x06, 0x09


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} {value} does not fit 4 bytes")
    return value.to_bytes(4, "big")


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit 2 bytes")
    return value.to_bytes(2, "big")


def _fields(terminal_id: bytes, date: bytes | None = None, time: bytes | None = None) -> None:
    if len(terminal_id) != 6:
        raise ValueError(f"terminal id must be 6 bytes, not {len(terminal_id)}")
    if date is not None and len(date) != 4:
        raise ValueError("transaction date must be 4 bytes BCD (YYYYMMDD)")
    if time is not None and len(time) != 3:
        raise ValueError("transaction time must be 3 bytes BCD (hhmmss)")


def purse_mac(session_key: bytes, data: bytes) -> bytes:
    """The ED/EP MAC: single-DES CBC-MAC, zero IV, ``80`` padding, first 4 bytes."""
    if len(session_key) != 8:
        raise ValueError(f"purse session key must be 8 bytes, not {len(session_key)}")
    return mac_alg1(session_key, data, padding=2, length=4)


def verify_purse_mac(session_key: bytes, data: bytes, mac: bytes) -> bool:
    """Constant-time check of a purse MAC or TAC."""
    return hmac.compare_digest(purse_mac(session_key, data), mac)


def _check_random(pseudo_random: bytes) -> None:
    if len(pseudo_random) != 4:
        raise ValueError(f"pseudo-random number must be 4 bytes, not {len(pseudo_random)}")


def load_session_key(dlk: bytes, pseudo_random: bytes, online_serial: int) -> bytes:
    """SESLK = 3DES(DLK, pseudo-random ‖ online serial ‖ 8000), 8 bytes."""
    _check_random(pseudo_random)
    return ecb_encrypt(dlk, pseudo_random + _u16(online_serial, "online serial") + b"\x80\x00")


def purchase_session_key(
    dpk: bytes, pseudo_random: bytes, offline_serial: int, terminal_serial: int
) -> bytes:
    """SESPK = 3DES(DPK, pseudo-random ‖ offline serial ‖ last 2 bytes of the terminal serial), 8 bytes."""
    _check_random(pseudo_random)
    tail = _u32(terminal_serial, "terminal serial")[2:]
    return ecb_encrypt(dpk, pseudo_random + _u16(offline_serial, "offline serial") + tail)


def tac_key(dtk: bytes) -> bytes:
    """The single-DES TAC key: left half of the 16-byte DTK xor its right half."""
    if len(dtk) != 16:
        raise ValueError(f"DTK must be 16 bytes, not {len(dtk)}")
    return xor(dtk[:8], dtk[8:])


def load_mac1(session_key: bytes, old_balance: int, amount: int, tx_type: int, terminal_id: bytes) -> bytes:
    """MAC1 of INITIALIZE FOR LOAD (card → terminal/host)."""
    _fields(terminal_id)
    data = _u32(old_balance, "balance") + _u32(amount, "amount") + bytes([tx_type]) + terminal_id
    return purse_mac(session_key, data)


def load_mac2(
    session_key: bytes, amount: int, tx_type: int, terminal_id: bytes, date: bytes, time: bytes
) -> bytes:
    """MAC2 of CREDIT FOR LOAD (host → card)."""
    return _amount_terminal_mac(session_key, amount, tx_type, terminal_id, date, time)


def load_tac(
    tac: bytes,
    new_balance: int,
    online_serial: int,
    amount: int,
    tx_type: int,
    terminal_id: bytes,
    date: bytes,
    time: bytes,
) -> bytes:
    """TAC of a load, under :func:`tac_key` (``online_serial`` as before the load)."""
    _fields(terminal_id, date, time)
    data = (
        _u32(new_balance, "balance")
        + _u16(online_serial, "online serial")
        + _u32(amount, "amount")
        + bytes([tx_type])
        + terminal_id
        + date
        + time
    )
    return purse_mac(tac, data)


def purchase_mac1(
    session_key: bytes, amount: int, tx_type: int, terminal_id: bytes, date: bytes, time: bytes
) -> bytes:
    """MAC1 of DEBIT FOR PURCHASE (terminal/PSAM → card)."""
    return _amount_terminal_mac(session_key, amount, tx_type, terminal_id, date, time)


def _amount_terminal_mac(
    session_key: bytes, amount: int, tx_type: int, terminal_id: bytes, date: bytes, time: bytes
) -> bytes:
    """The MAC over ``amount ‖ type ‖ terminal ‖ date ‖ time`` that load MAC2 and purchase MAC1 share."""
    _fields(terminal_id, date, time)
    return purse_mac(session_key, _u32(amount, "amount") + bytes([tx_type]) + terminal_id + date + time)


def purchase_mac2(session_key: bytes, amount: int) -> bytes:
    """MAC2 of DEBIT FOR PURCHASE (card → terminal/PSAM): over the amount."""
    return purse_mac(session_key, _u32(amount, "amount"))


def purchase_tac(
    tac: bytes,
    amount: int,
    tx_type: int,
    terminal_id: bytes,
    terminal_serial: int,
    date: bytes,
    time: bytes,
) -> bytes:
    """TAC of a purchase, under :func:`tac_key`."""
    _fields(terminal_id, date, time)
    data = (
        _u32(amount, "amount")
        + bytes([tx_type])
        + terminal_id
        + _u32(terminal_serial, "terminal serial")
        + date
        + time
    )
    return purse_mac(tac, data)
