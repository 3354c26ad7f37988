"""Convert the checkpoints published with MTTR, ReferFormer, SOC and LoSh into rvoslib folders.

See :mod:`rvoslib.convert.base` for the converter contract.
"""

from __future__ import annotations

from rvoslib.convert.base import CONVERTERS, Conversion, UnexpectedKeysError

__all__ = ["CONVERTERS", "Conversion", "UnexpectedKeysError"]
