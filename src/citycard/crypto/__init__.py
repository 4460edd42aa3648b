"""Cryptography of cards and terminals, over `cryptography` (EMV Book 2, JR/T 0025.7, ISO/IEC 9797-1)."""
