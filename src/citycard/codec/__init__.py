"""Pure codecs: BER-TLV, DOLs, APDUs, the tag dictionary (EMV Book 3, JR/T 0025, ISO/IEC 7816-4)."""
