"""Cryptography of cards and terminals, over `cryptography` and gmpy2 (EMV Book 2, JR/T 0025, ISO/IEC 9797-1).

Pure core: bytes in, bytes out; no I/O, no clock, random sources passed in. One module per concept:

- :mod:`.des` — the one DES/3DES wrapper (cached key contexts), parity, KCV;
- :mod:`.mac` — ISO/IEC 9797-1 MAC algorithms 1 and 3, padding methods 1 and 2;
- :mod:`.derivation` — ICC master keys (EMV option A), PBOC and EMV common session keys;
- :mod:`.cryptograms` — AC input, ARQC/TC/AAC, ARPC 1 and 2, script MACs and script commands, EC load;
- :mod:`.pin` — ISO format 0, offline PIN blocks (plain, RSA-enciphered), PIN CHANGE/UNBLOCK data;
- :mod:`.rsa_cert` — raw RSA (gmpy2, CRT), EMV certificates and signatures (SDA, DDA, fDDA, CDA);
- :mod:`.sm` — SM3, SM4 and the 3DES/SM4 :class:`~.sm.Algorithm` selector (PBOC 3.0);
- :mod:`.purse` — PBOC ED/EP load and purchase session keys, MAC1/MAC2/TAC.
"""
