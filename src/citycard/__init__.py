"""citycard: a city's citizen card programme, from the PBOC 2.0 chip to the settlement report."""

from citycard import _compiled

__version__ = "0.1.0"

_compiled.install()  # the hot path's modules compiled by mypyc, when built from these sources
