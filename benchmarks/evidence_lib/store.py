"""The evidence's per-question data as plain arrays: answers as integer codes, read-outs, scores.

The report's numbers are recomputed from ``benchmarks/results/evidence_data.npz``
(``benchmarks/evidence_recompute.py``), which holds integers, booleans and
floats only (read with ``allow_pickle=False``).  An extracted answer becomes an
integer code that keeps what the report compares: two answers are equal
(``hf_modeling.answers.answers_equal``) exactly when their codes are equal and
not :data:`NONE`.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from hf_modeling.answers import answer_key

NONE = -(2**31)  # no answer could be extracted
_NUMBER_LIMIT = 2**29  # numbers within +-this are stored as themselves
_TEXT_BASE = -(2**30)  # other answers: a hash of their text below this


def answer_code(answer) -> int:
    """The integer code of one extracted answer (see the module)."""
    key = answer_key(answer)
    if key is None:
        return NONE
    kind, value = key
    if kind == "num" and getattr(value, "denominator", 1) == 1 and abs(int(value)) < _NUMBER_LIMIT:
        return int(value)
    return _TEXT_BASE - zlib.crc32(repr(key).encode()) % (2**29)


def answer_codes(rows: Sequence[Sequence]) -> np.ndarray:
    """(Q, N) int32 codes of per-question answer lists."""
    return np.array([[answer_code(a) for a in row] for row in rows], dtype=np.int32)


def is_number(codes) -> np.ndarray:
    """Which codes are integer answers (not :data:`NONE`, not a text)."""
    codes = np.asarray(codes)
    return codes > _TEXT_BASE


def code_answer(code: int):
    """An answer the project's aggregation functions read like the original: None, the number as text, or a
    text that equals only answers of the same code."""
    code = int(code)
    if code == NONE:
        return None
    if code <= _TEXT_BASE:
        return f"text#{code}"
    return str(code)


def code_answers(codes: np.ndarray) -> list:
    """(Q, N) codes -> per-question lists of answers (:func:`code_answer`)."""
    return [[code_answer(c) for c in row] for row in np.asarray(codes).tolist()]


def exact_float32(x) -> np.ndarray:
    """``x`` as float32, refusing a value that float32 does not hold exactly (scores are stored as computed)."""
    a = np.asarray(x, dtype=np.float64)
    b = a.astype(np.float32)
    if not np.array_equal(b.astype(np.float64), a, equal_nan=True):
        raise ValueError("these scores are not float32 values; store them as float64")
    return b
