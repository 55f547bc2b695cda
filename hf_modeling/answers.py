"""Judging answers: where each backbone writes its answer, and when two answers are the same.

Pure Python (no torch), the one place for these facts: the models
(``model.extract_answer`` / ``model.is_correct``), the lm-eval tasks, the
votes, annotation, the recipes and the benchmarks all call it.  Conventions:

* An *answer* is a string as returned by :func:`extract_answer`, a number, or
  ``None`` (nothing could be extracted).  ``None`` is always wrong: it never
  equals anything, not even another ``None``, and it never wins a vote.
* Two answers are equal when both parse as numbers and the numbers are equal
  (``"1,234" == "1234.0"``, ``"-3" == "-3.00"``, ``"1/2" == "0.5"``);
  otherwise when their whitespace-collapsed, case-folded strings are equal.
* A comma is a thousands separator and nothing else: ``"1,234,567.5"`` is a
  number, ``"1,2,3"`` and ``"12,34"`` are not (so they never equal ``123`` or
  ``1234``).  The Unicode minus sign (U+2212) reads as ``-``.
* Whitespace never joins numbers: ``"3 4"`` and ``"1 2 3"`` are not numbers
  (they were read as 34 and 123).  One space-separated form is a number: a
  mixed number, a whole number and a proper fraction, ``"2 1/2"`` = 5/2 and
  ``"-2 1/2"`` = -5/2 (it was read as 21/2).
* NaN and infinities (floats or strings such as ``"nan"``, ``"-Inf"``) are
  never equal to anything, not even themselves: a model that prints ``nan``
  must not match a gold ``nan`` by accident.

This file is copied next to saved checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from numbers import Number

UNICODE_MINUS = "\u2212"
# a number in free text: digits with optional thousands groups ("1,234") and decimals; a comma that does not
# start a group of exactly three digits ends the number ("1,2,3" is three numbers)
_NUMBER_RE = re.compile(r"[-\u2212]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-\u2212]?\.\d+")
# a whole answer that is a number: optional sign, digits (thousands groups allowed), decimals, exponent, /denominator
_NUMERIC_ANSWER_RE = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:/\d+)?")
# a mixed number: sign, whole part (thousands groups allowed), whitespace, a proper fraction
_MIXED_RE = re.compile(r"([+-]?)((?:\d{1,3}(?:,\d{3})+|\d+))\s+(\d+)/(\d+)")
_NON_FINITE = {"nan", "inf", "infinity"}
def last_number(text: str | None) -> str | None:
    """The last number in ``text`` (thousands commas removed: ``"1,234"`` -> ``"1234"``; ``"1,2,3"``
    ends with the number ``"3"``; U+2212 becomes ``-``), or ``None``."""
    found = _NUMBER_RE.findall("" if text is None else str(text))
    return found[-1].replace(",", "").replace(UNICODE_MINUS, "-") if found else None


def text_after(text: str | None, marker: str) -> str | None:
    """The first line of the text after the last ``marker``, stripped; ``None`` when absent or empty."""
    if text is None or marker not in str(text):
        return None
    answer = str(text).rsplit(marker, 1)[1].strip().split("\n", 1)[0].strip()
    return answer or None


# SPEC: where each backbone writes its answer
ANSWER_FORMATS = {
    "coconut": lambda text: text_after(text, "#"),  # "### 18" -> "18"
    "codi": last_number,
    "colar": lambda text: text_after(text, "Answer:"),
}


def extract_answer(text: str | None, kind: str) -> str | None:
    """The answer in a decoded answer ``text`` in the format of backbone ``kind`` ('coconut', 'codi', 'colar')."""
    try:
        return ANSWER_FORMATS[kind](text)
    except KeyError:
        raise ValueError(f"Unknown latent backbone {kind!r}; expected one of {sorted(ANSWER_FORMATS)}.") from None


def normalize_number(answer) -> int | Fraction | None:
    """The answer as an exact number (``int`` if integral, else ``Fraction``), or ``None`` if it is not one.

    Accepts ``"1,234"``, ``"1,234,567.5"``, ``"1234.0"``, ``"-3"``, ``"\u22123"``, ``"$12"``, ``"12."``,
    ``"3/4"``, ``"1e3"``, the mixed number ``"2 1/2"`` (5/2), ints and floats.  Rejects commas that are not
    thousands separators (``"1,2,3"``, ``"12,34"``), numbers separated by whitespace (``"3 4"``, ``"2 3/2"``),
    NaN and infinities.
    """
    if answer is None or isinstance(answer, bool):
        return None
    if isinstance(answer, Number):
        if isinstance(answer, float) and not math.isfinite(answer):
            return None
        try:  # a float by its shortest decimal text: 0.1 is 1/10, as "0.1" is, not its binary value
            value = Fraction(repr(answer)) if isinstance(answer, float) else Fraction(answer)
        except (TypeError, ValueError, OverflowError):
            return None
    else:
        s = str(answer).strip().replace(UNICODE_MINUS, "-")
        s = s.removeprefix("$").rstrip(".").rstrip("%").strip()  # "$ 12", "12 %": one number and its sign
        mixed = _MIXED_RE.fullmatch(s)
        if mixed is not None:
            sign, whole, numerator, denominator = mixed.groups()
            if not 0 < int(numerator) < int(denominator):
                return None  # "2 3/2", "2 0/4": not a mixed number
            value = int(whole.replace(",", "")) + Fraction(int(numerator), int(denominator))
            value = -value if sign == "-" else value
        elif not s or not _NUMERIC_ANSWER_RE.fullmatch(s):
            return None
        else:
            try:
                value = Fraction(s.replace(",", ""))
            except (ValueError, ZeroDivisionError):
                return None
    return int(value) if value.denominator == 1 else value


def number_text(number: int | Fraction) -> str:
    """Exact text of a number from :func:`normalize_number`: ``10**30`` -> ``"1000000000000000000000000000000"``,
    ``Fraction(1, 8)`` -> ``"0.125"``; a fraction with no finite decimal expansion as ``"1/3"``.

    Never through a binary float, which would change large or long numbers (``1e23`` -> ``99999999999999991611392``).
    """
    if isinstance(number, int) or number.denominator == 1:
        return str(int(number))
    den, twos, fives = number.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{number.numerator}/{number.denominator}"
    places = max(twos, fives)
    scaled = abs(number.numerator) * 10**places // number.denominator
    digits = str(scaled).rjust(places + 1, "0")
    return ("-" if number < 0 else "") + digits[:-places] + "." + digits[-places:]


def _is_non_finite(answer) -> bool:
    """True for NaN / infinity as a float or as text (``"nan"``, ``"-Inf"``, ``"\u2212infinity"``)."""
    text = str(answer).strip().casefold().lstrip("+-" + UNICODE_MINUS)
    return text in _NON_FINITE


def answer_key(answer) -> tuple | None:
    """A hashable canonical form: the number for numeric answers, else the collapsed lower-case string.

    ``None`` for no answer and for NaN / infinities, so that they never equal anything and never win a vote.
    """
    if answer is None or _is_non_finite(answer):
        return None
    number = normalize_number(answer)
    if number is not None:
        return ("num", number)
    text = " ".join(str(answer).split()).casefold()
    return ("str", text) if text else None


def answers_equal(a, b) -> bool:
    """True if both answers are present and equal (numbers as numbers); ``None`` never equals anything."""
    ka, kb = answer_key(a), answer_key(b)
    return ka is not None and kb is not None and ka == kb


__all__ = [
    "ANSWER_FORMATS",
    "answer_key",
    "answers_equal",
    "extract_answer",
    "last_number",
    "normalize_number",
    "number_text",
    "text_after",
]
