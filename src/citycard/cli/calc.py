"""``citycard calc``: calculators for the card cryptography and data formats, hex in and hex out.

Key derivation (EMV Book 2 A1.3/A1.4, PBOC session keys), cryptograms and ARPC (Book 2 §8), ISO 9797-1
MACs, key check values, ISO 9564 PIN blocks, and BER-TLV / DOL decoding with tag names. Everything here is
a thin layer over :mod:`citycard.crypto` and :mod:`citycard.codec`; ATCs are hex too (``0001``).
These are tools for test keys: anything typed on a command line may end up in a shell history.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from citycard.codec.dol import DolError, parse_dol, split_dol_data
from citycard.codec.money import parse_yuan
from citycard.codec.pretty import format_dol, format_tlv, render_value
from citycard.codec.tags import tag_name
from citycard.codec.tlv import TlvError
from citycard.codec.tlv import decode as decode_tlv
from citycard.crypto.cryptograms import (
    arpc_method1,
    arpc_method2,
    ec_load_script,
    generate_ac,
    script_command,
    verify_ac,
)
from citycard.crypto.derivation import derive_common_session_key, derive_icc_mk_a
from citycard.crypto.des import cbc_decrypt, cbc_encrypt, ecb_decrypt, ecb_encrypt
from citycard.crypto.des import kcv as key_check_value
from citycard.crypto.mac import mac_alg1, mac_alg3
from citycard.crypto.pin import PinBlockError, pin_block_iso0, pin_from_iso0
from citycard.crypto.rsa_cert import (
    CertificateError,
    RsaPublicKey,
    recover_icc_certificate,
    recover_issuer_certificate,
)
from citycard.crypto.sm import (
    Algorithm,
    derive_session_key,
    sm3,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
)

__all__ = ["app"]

app = typer.Typer(
    help="Calculators: key derivation, cryptograms, ARPC, MAC, KCV, PIN block, TLV, DOL (hex in, hex out).",
    no_args_is_help=True,
)


def _hex(value: str, name: str, lengths: tuple[int, ...] | None = None) -> bytes:
    cleaned = "".join(value.split())
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise typer.BadParameter(f"{name} is not hex: {value!r}") from None
    if lengths is not None and len(raw) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise typer.BadParameter(f"{name} must be {want} bytes, not {len(raw)}")
    return raw


def _atc(value: str) -> int:
    return int.from_bytes(_hex(value, "ATC", (2,)), "big")


def _out(label: str, value: bytes | str) -> None:
    text = value.hex().upper() if isinstance(value, bytes) else value
    typer.echo(f"{label}: {text}")


def _algorithm(sm4: bool) -> Algorithm:
    return Algorithm.SM4 if sm4 else Algorithm.TDES


def _session_key(sk: str | None, udk: str | None, atc: str | None, sm4: bool) -> bytes:
    if sk is not None:
        return _hex(sk, "SK", (16,))
    if udk is None or atc is None:
        raise typer.BadParameter("give --sk, or --udk and --atc")
    key = derive_session_key(_algorithm(sm4), _hex(udk, "UDK", (16,)), _atc(atc))
    _out("Session key", key)
    return key


def _script_key(sk: str | None, udk: str | None, atc: str | None, sm4: bool) -> tuple[bytes, int]:
    """(MAC session key, ATC) for an issuer script: the MAC covers the ATC, so it is always needed."""
    key = _session_key(sk, udk, atc, sm4)
    if atc is None:
        raise typer.BadParameter("--atc is needed: the script MAC covers it")
    return key, _atc(atc)


SK_OPT = typer.Option(None, "--sk", help="Session key (16 bytes hex).")
UDK_OPT = typer.Option(None, "--udk", help="Card master key (UDK); with --atc derives the PBOC session key.")
ATC_OPT = typer.Option(None, "--atc", help="ATC, 2 bytes hex (e.g. 0001).")
UDK_MAC_OPT = typer.Option(None, "--udk", help="MAC master key (UDK); with --atc derives the session key.")
SM4_OPT = typer.Option(False, "--sm4", help="Use SM4 (PBOC 3.0) instead of 3DES.")


@app.command("icc-mk")
def icc_mk(
    imk: str = typer.Argument(..., help="Issuer master key, 16 bytes hex."),
    pan: str = typer.Argument(..., help="PAN digits."),
    psn: str = typer.Argument("00", help="PAN sequence number, 2 digits."),
) -> None:
    """ICC master key (UDK) by EMV Book 2 A1.4.1 option A."""
    try:
        key = derive_icc_mk_a(_hex(imk, "IMK", (16,)), pan, psn)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _out("ICC master key", key)
    _out("KCV", key_check_value(key))


@app.command("session-key")
def session_key(
    udk: str = typer.Argument(..., help="Card master key (UDK), 16 bytes hex."),
    atc: str = typer.Argument(..., help="ATC, 2 bytes hex."),
    sm4: bool = SM4_OPT,
) -> None:
    """PBOC session key: 3DES(UDK, 000000000000‖ATC) ‖ 3DES(UDK, 000000000000‖(ATC⊕FFFF))."""
    key = derive_session_key(_algorithm(sm4), _hex(udk, "UDK", (16,)), _atc(atc))
    _out("Session key", key)
    if not sm4:
        _out("KCV", key_check_value(key))


@app.command("common-sk")
def common_sk(
    mk: str = typer.Argument(..., help="Master key, 16 bytes hex."),
    r: str = typer.Argument(..., help="Diversification value R, 8 bytes hex (ATC‖000000000000 for AC)."),
) -> None:
    """EMV Book 2 A1.3 common session key."""
    key = derive_common_session_key(_hex(mk, "MK", (16,)), _hex(r, "R", (8,)))
    _out("Session key", key)
    _out("KCV", key_check_value(key))


@app.command("arqc")
def arqc(
    data: str = typer.Argument(..., help="Cryptogram input data (hex), e.g. the ac_input concatenation."),
    sk: str | None = SK_OPT,
    udk: str | None = UDK_OPT,
    atc: str | None = ATC_OPT,
    sm4: bool = SM4_OPT,
) -> None:
    """Application cryptogram (ARQC/TC/AAC): ISO 9797-1 MAC alg 3, padding 2."""
    key = _session_key(sk, udk, atc, sm4)
    _out("Cryptogram", generate_ac(key, _hex(data, "DATA"), algorithm=_algorithm(sm4)))


@app.command("arqc-verify")
def arqc_verify(
    data: str = typer.Argument(..., help="Cryptogram input data (hex)."),
    cryptogram: str = typer.Argument(..., help="The ARQC/TC/AAC to check, 8 bytes hex."),
    sk: str | None = SK_OPT,
    udk: str | None = UDK_OPT,
    atc: str | None = ATC_OPT,
    sm4: bool = SM4_OPT,
) -> None:
    """Check a cryptogram; exit status 1 when it does not match."""
    key = _session_key(sk, udk, atc, sm4)
    ok = verify_ac(key, _hex(data, "DATA"), _hex(cryptogram, "CRYPTOGRAM", (8,)), algorithm=_algorithm(sm4))
    _out("Cryptogram", "valid" if ok else "INVALID")
    if not ok:
        raise typer.Exit(1)


@app.command("arpc")
def arpc(
    arqc_hex: str = typer.Argument(..., metavar="ARQC", help="ARQC, 8 bytes hex."),
    sk: str | None = SK_OPT,
    udk: str | None = UDK_OPT,
    atc: str | None = ATC_OPT,
    method: int = typer.Option(1, "--method", help="ARPC method 1 (ARC) or 2 (CSU)."),
    arc: str = typer.Option("3030", "--arc", help="Method 1: authorisation response code, 2 bytes hex."),
    csu: str = typer.Option("00000000", "--csu", help="Method 2: card status update, 4 bytes hex."),
    proprietary: str = typer.Option("", "--proprietary", help="Method 2: proprietary auth data, hex."),
    sm4: bool = SM4_OPT,
) -> None:
    """ARPC by EMV Book 2 §8.2.1 (method 1) or §8.2.2 (method 2)."""
    if sm4 and method == 1:
        raise typer.BadParameter("ARPC method 1 is 3DES only here; use --method 2 with --sm4")
    key = _session_key(sk, udk, atc, sm4)
    cryptogram = _hex(arqc_hex, "ARQC", (8,))
    if method == 1:
        _out("ARPC", arpc_method1(key, cryptogram, _hex(arc, "ARC", (2,))))
    elif method == 2:
        value = arpc_method2(
            key,
            cryptogram,
            _hex(csu, "CSU", (4,)),
            _hex(proprietary, "proprietary"),
            algorithm=_algorithm(sm4),
        )
        _out("ARPC", value)
    else:
        raise typer.BadParameter("method must be 1 or 2")


@app.command("ec-load")
def ec_load(
    arqc_hex: str = typer.Argument(..., metavar="ARQC", help="ARQC of the load transaction, 8 bytes hex."),
    balance: str = typer.Argument(..., help="New EC balance in yuan (e.g. 500.00)."),
    sk: str | None = SK_OPT,
    udk: str | None = UDK_MAC_OPT,
    atc: str | None = ATC_OPT,
    sm4: bool = SM4_OPT,
) -> None:
    """EC load issuer script: 04DA9F790A ‖ new balance ‖ MAC over it with the ATC and ARQC (JR/T 0025.13)."""
    key, script_atc = _script_key(sk, udk, atc, sm4)
    try:
        balance_fen = parse_yuan(balance)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="BALANCE") from None
    try:
        command = ec_load_script(
            key, script_atc, _hex(arqc_hex, "ARQC", (8,)), balance_fen, algorithm=_algorithm(sm4)
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _out("Script command", command)


@app.command("script")
def script(
    header: str = typer.Argument(..., help="CLA INS P1 P2, 4 bytes hex (e.g. 841E0000 APPLICATION BLOCK)."),
    arqc_hex: str = typer.Argument(..., metavar="ARQC", help="ARQC of the transaction, 8 bytes hex."),
    data: str = typer.Option("", "--data", help="Command data before the MAC, hex."),
    sk: str | None = SK_OPT,
    udk: str | None = UDK_MAC_OPT,
    atc: str | None = ATC_OPT,
    sm4: bool = SM4_OPT,
) -> None:
    """Any issuer-script command under secure messaging: header ‖ Lc ‖ data ‖ MAC (EMV Book 2 §9.2.1)."""
    key, script_atc = _script_key(sk, udk, atc, sm4)
    raw_header, raw_data = _hex(header, "HEADER", (4,)), _hex(data, "DATA")
    try:
        command = script_command(
            key, raw_header, raw_data, script_atc, _hex(arqc_hex, "ARQC", (8,)), algorithm=_algorithm(sm4)
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _out("Script command", command)


@app.command("mac")
def mac(
    key: str = typer.Argument(..., help="Key, 8 or 16 bytes hex (16 for algorithm 3)."),
    data: str = typer.Argument(..., help="Data, hex (use --ascii for text)."),
    padding: int = typer.Option(2, "--padding", help="ISO 9797-1 padding method 1 (zeros) or 2 (80 00…)."),
    alg: int = typer.Option(3, "--alg", help="ISO 9797-1 MAC algorithm 1 (CBC-MAC) or 3 (retail MAC)."),
    length: int = typer.Option(8, "--length", min=1, max=8, help="MAC length in bytes."),
    ascii_data: bool = typer.Option(False, "--ascii", help="DATA is ASCII text, not hex."),
) -> None:
    """ISO/IEC 9797-1 MAC (algorithm 1 or 3, padding 1 or 2)."""
    raw_key = _hex(key, "KEY", (8, 16, 24) if alg == 1 else (16,))
    raw = data.encode("ascii") if ascii_data else _hex(data, "DATA")
    if alg not in (1, 3) or padding not in (1, 2):
        raise typer.BadParameter("--alg must be 1 or 3 and --padding 1 or 2")
    func = mac_alg1 if alg == 1 else mac_alg3
    _out("MAC", func(raw_key, raw, padding=padding, length=length))


@app.command("kcv")
def kcv(
    key: str = typer.Argument(..., help="DES/3DES key, 8, 16 or 24 bytes hex."),
    length: int = typer.Option(3, "--length", min=1, max=8),
) -> None:
    """Key check value: the key encrypting a zero block."""
    _out("KCV", key_check_value(_hex(key, "KEY", (8, 16, 24)), length))


@app.command("pin-block")
def pin_block(
    first: str = typer.Argument(
        ..., metavar="PIN|PAN", help="The PIN (then the PAN); the PAN with --decode."
    ),
    second: str | None = typer.Argument(None, metavar="[PAN]", show_default=False),
    decode: str | None = typer.Option(None, "--decode", help="An ISO format 0 block to decode (hex)."),
) -> None:
    """ISO 9564-1 format 0 PIN block (clear): PIN PAN → block, or --decode BLOCK PAN → PIN."""
    try:
        if decode is not None:
            if second is not None:
                raise typer.BadParameter("with --decode give only the PAN")
            _out("PIN", pin_from_iso0(_hex(decode, "BLOCK", (8,)), _pan_for_pin_block(first)))
            return
        if second is None:
            raise typer.BadParameter("give PIN and PAN")
        _out("PIN block", pin_block_iso0(first, _pan_for_pin_block(second)))
    except PinBlockError as exc:
        raise typer.BadParameter(str(exc)) from None


def _pan_for_pin_block(pan: str) -> str:
    """A PAN of 13 to 19 digits: ISO 9564-1 format 0 takes the 12 rightmost digits before the check digit
    (ISO/IEC 7812-1), so a shorter number is not a card's PAN but a typing mistake."""
    if not pan.isdigit() or not 13 <= len(pan) <= 19:
        raise typer.BadParameter(f"a PAN is 13 to 19 digits, not {pan!r}", param_hint="PAN")
    return pan


@app.command("tlv")
def tlv(
    data: str = typer.Argument(..., help="BER-TLV data, hex."),
    rid: str | None = typer.Option(None, "--rid", help="RID for scheme-specific tags (A000000333 PBOC)."),
    unmask: bool = typer.Option(False, "--unmask", help="Show PANs in full."),
) -> None:
    """Decode BER-TLV with tag names and readable values."""
    raw = _hex(data, "DATA")
    try:
        decode_tlv(raw)
    except TlvError as exc:
        raise typer.BadParameter(f"not BER-TLV: {exc}", param_hint="DATA") from None
    typer.echo(format_tlv(raw, rid=rid, mask=not unmask))


@app.command("dol")
def dol(
    dol_hex: str = typer.Argument(..., metavar="DOL", help="A data object list (tag, length pairs), hex."),
    data: str | None = typer.Argument(None, help="Data built from this DOL, hex: split into values."),
    rid: str | None = typer.Option(None, "--rid", help="RID for scheme-specific tags."),
) -> None:
    """Decode a DOL (PDOL, CDOL, DDOL, log format), and optionally the data that answers it."""
    raw = _hex(dol_hex, "DOL")
    try:
        parse_dol(raw)
    except DolError as exc:
        raise typer.BadParameter(f"not a DOL: {exc}", param_hint="DOL") from None
    values: dict[str, bytes] = {}
    if data is not None:  # checked before anything is printed
        try:
            values = split_dol_data(raw, _hex(data, "DATA"))
        except DolError as exc:
            raise typer.BadParameter(str(exc), param_hint="DATA") from None
    typer.echo(format_dol(raw, rid))
    for tag, value in values.items():
        rendered = render_value(tag, value, rid=rid)
        suffix = f" = {rendered}" if rendered is not None else ""
        typer.echo(f"{tag} {tag_name(tag, rid)}: {value.hex().upper()}{suffix}")


@app.command("des")
def des(
    key: str = typer.Argument(..., help="DES/3DES key, 8, 16 or 24 bytes hex."),
    data: str = typer.Argument(..., help="Data, hex, a whole number of 8-byte blocks."),
    decrypt: bool = typer.Option(False, "--decrypt", help="Decrypt instead of encrypt."),
    cbc: bool = typer.Option(False, "--cbc", help="CBC mode (zero IV unless --iv) instead of ECB."),
    iv: str = typer.Option("0000000000000000", "--iv", help="CBC initial vector, 8 bytes hex."),
) -> None:
    """DES / 3DES-EDE encryption or decryption, ECB or CBC, no padding."""
    raw_key = _hex(key, "KEY", (8, 16, 24))
    modes = ((ecb_encrypt, ecb_decrypt), (cbc_encrypt, cbc_decrypt))
    _block_cipher(raw_key, data, 8, decrypt, iv if cbc else None, modes)


_Ecb = Callable[[bytes, bytes], bytes]
_Cbc = Callable[[bytes, bytes, bytes], bytes]


def _block_cipher(
    key: bytes,
    data: str,
    block: int,
    decrypt: bool,
    iv: str | None,
    modes: tuple[tuple[_Ecb, _Ecb], tuple[_Cbc, _Cbc]],
) -> None:
    """ECB (``iv`` None) or CBC over whole blocks with ``modes`` = ((ecb enc, dec), (cbc enc, dec))."""
    raw = _hex(data, "DATA")
    if len(raw) % block:
        raise typer.BadParameter(f"DATA must be a whole number of {block}-byte blocks")
    ecb, cbc = modes
    out = ecb[decrypt](key, raw) if iv is None else cbc[decrypt](key, raw, _hex(iv, "IV", (block,)))
    _out("Plaintext" if decrypt else "Ciphertext", out)


@app.command("sm4")
def sm4(
    key: str = typer.Argument(..., help="SM4 key, 16 bytes hex."),
    data: str = typer.Argument(..., help="Data, hex, a whole number of 16-byte blocks."),
    decrypt: bool = typer.Option(False, "--decrypt", help="Decrypt instead of encrypt."),
    cbc: bool = typer.Option(False, "--cbc", help="CBC mode (zero IV unless --iv) instead of ECB."),
    iv: str = typer.Option("00" * 16, "--iv", help="CBC initial vector, 16 bytes hex."),
) -> None:
    """SM4 (GB/T 32907-2016) encryption or decryption, ECB or CBC, no padding."""
    modes = ((sm4_ecb_encrypt, sm4_ecb_decrypt), (sm4_cbc_encrypt, sm4_cbc_decrypt))
    _block_cipher(_hex(key, "KEY", (16,)), data, 16, decrypt, iv if cbc else None, modes)


@app.command("sm3")
def sm3_cmd(
    data: str = typer.Argument(..., help="Data, hex (use --ascii for text)."),
    ascii_data: bool = typer.Option(False, "--ascii", help="DATA is ASCII text, not hex."),
) -> None:
    """SM3 digest (GB/T 32905-2016)."""
    _out("SM3", sm3(data.encode("ascii") if ascii_data else _hex(data, "DATA")))


@app.command("cert")
def cert(
    ca_modulus: str = typer.Argument(..., help="CA public key modulus, hex."),
    issuer_cert: str = typer.Argument(..., help="Issuer public key certificate (90), hex."),
    ca_exponent: str = typer.Option("03", "--ca-exponent", help="CA public key exponent, hex."),
    issuer_remainder: str = typer.Option("", "--issuer-remainder", help="Issuer PK remainder (92), hex."),
    issuer_exponent: str = typer.Option("03", "--issuer-exponent", help="Issuer PK exponent (9F32), hex."),
    icc_cert: str | None = typer.Option(None, "--icc-cert", help="ICC public key certificate (9F46), hex."),
    icc_remainder: str = typer.Option("", "--icc-remainder", help="ICC PK remainder (9F48), hex."),
    icc_exponent: str = typer.Option("03", "--icc-exponent", help="ICC PK exponent (9F47), hex."),
    static_data: str = typer.Option("", "--static-data", help="Static data to be authenticated, hex."),
) -> None:
    """Recover the issuer (and ICC) public key certificates, EMV Book 2 §5.3 / §6.4; exit 1 if one fails."""
    ca = RsaPublicKey(
        int.from_bytes(_hex(ca_modulus, "CA modulus"), "big"), int.from_bytes(_hex(ca_exponent, "exp"), "big")
    )
    try:
        issuer = recover_issuer_certificate(
            ca, _hex(issuer_cert, "90"), _hex(issuer_remainder, "92"), _hex(issuer_exponent, "9F32")
        )
    except CertificateError as exc:
        _out("Issuer certificate", f"INVALID ({exc})")
        raise typer.Exit(1) from None
    _out("Issuer identifier", issuer.issuer_identifier)
    _out("Issuer certificate expiry (MMYY)", issuer.expiry)
    _out("Issuer certificate serial", issuer.serial)
    _out("Issuer public key modulus", issuer.public_key.modulus)
    if icc_cert is None:
        return
    try:
        icc = recover_icc_certificate(
            issuer.public_key,
            _hex(icc_cert, "9F46"),
            _hex(icc_remainder, "9F48"),
            _hex(icc_exponent, "9F47"),
            _hex(static_data, "static data"),
        )
    except CertificateError as exc:
        _out("ICC certificate", f"INVALID ({exc})")
        raise typer.Exit(1) from None
    _out("ICC PAN", icc.pan)
    _out("ICC certificate expiry (MMYY)", icc.expiry)
    _out("ICC public key modulus", icc.public_key.modulus)
