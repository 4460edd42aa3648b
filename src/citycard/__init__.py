"""citycard: a city's citizen card programme, from the PBOC 2.0 chip to the settlement report."""

__version__ = "0.1.0"
