"""Convert the checkpoints published with MTTR, ReferFormer, SOC and LoSh into rvoslib folders.

See :mod:`rvoslib.convert.base` for the converter contract, :mod:`rvoslib.convert.core` for
:func:`convert_checkpoint` and :mod:`rvoslib.convert.safe_load` for reading the files.
"""

from __future__ import annotations

from rvoslib.convert import losh, mttr, referformer, soc  # noqa: F401  (register the converters)
from rvoslib.convert.base import CONVERTERS, Conversion, UnexpectedKeysError
from rvoslib.convert.core import (
    convert_checkpoint,
    convert_state_dict,
    detect_source,
    load_checkpoint,
)
from rvoslib.convert.safe_load import UnsafeCheckpointError, load_original_checkpoint

__all__ = [
    "CONVERTERS",
    "Conversion",
    "UnexpectedKeysError",
    "UnsafeCheckpointError",
    "convert_checkpoint",
    "convert_state_dict",
    "detect_source",
    "load_checkpoint",
    "load_original_checkpoint",
]
