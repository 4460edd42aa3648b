"""The card: an emulator of a PBOC 2.0 citizen card (debit with electronic cash, credit), APDU for APDU
(JR/T 0025.4/.5/.12/.13; EMV 4.3). Pure core: no I/O, no clock; randomness is passed in.

- :mod:`~citycard.chip.image` — the card image (all persistent state) and its anti-tearing journal;
- :mod:`~citycard.chip.card` — :class:`~citycard.chip.card.Card`: ``power_on``, ``transmit``, ``power_off``;
- :mod:`~citycard.chip.personalise` — a product profile in, a card image out;
- :mod:`~citycard.chip.pboc` — the profile's constants and data formats (``docs/card-profile.md``).
"""

from __future__ import annotations

from .card import Card, CardError, Interface
from .image import CardImage, ImageError, PowerLoss
from .personalise import PersonalisationKeys, ProductProfile, ProfileError, personalise

__all__ = [
    "Card",
    "CardError",
    "CardImage",
    "ImageError",
    "Interface",
    "PersonalisationKeys",
    "PowerLoss",
    "ProductProfile",
    "ProfileError",
    "personalise",
]
