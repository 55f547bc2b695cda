"""Answer extraction, aggregation over N sampled answers, and coverage metrics.

Pure Python (no torch).  Conventions used throughout:

* An *answer* is a string as returned by :func:`extract_answer`, a number, or
  ``None`` (nothing could be extracted).  ``None`` is always wrong: it never
  equals anything, not even another ``None``, and it never wins a vote.
* Two answers are equal when both parse as numbers and the numbers are equal
  (``"1,234" == "1234.0"``, ``"-3" == "-3.00"``, ``"1/2" == "0.5"``);
  otherwise when their whitespace-collapsed, case-folded strings are equal.
* A comma is a thousands separator and nothing else: ``"1,234,567.5"`` is a
  number, ``"1,2,3"`` and ``"12,34"`` are not (so they never equal ``123`` or
  ``1234``).  The Unicode minus sign (U+2212) reads as ``-``.
* NaN and infinities (floats or strings such as ``"nan"``, ``"-Inf"``) are
  never equal to anything, not even themselves: a model that prints ``nan``
  must not match a gold ``nan`` by accident.
* Ties are broken deterministically by the earliest first occurrence among the
  N answers (index order), for every aggregation here.
"""

import math
import re
from fractions import Fraction
from numbers import Number

__all__ = [
    "extract_answer",
    "normalize_number",
    "answer_key",
    "answers_equal",
    "majority_vote",
    "best_of_n",
    "best_of_n_index",
    "weighted_vote",
    "answer_weights",
    "coverage",
    "pass_at_k",
]

UNICODE_MINUS = "\u2212"
# a number in free text: digits with optional thousands groups ("1,234") and decimals; a comma that does not
# start a group of exactly three digits ends the number ("1,2,3" is three numbers)
_NUMBER_RE = re.compile(r"[-\u2212]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-\u2212]?\.\d+")
# a whole answer that is a number: optional sign, digits (thousands groups allowed), decimals, exponent, /denominator
_NUMERIC_ANSWER_RE = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:/\d+)?")
_NON_FINITE = {"nan", "inf", "infinity"}
_BACKBONES = ("coconut", "codi", "colar")


def _backbone_kind(backbone):
    """'coconut' / 'codi' / 'colar' from a backbone name, class name, model_type or model object."""
    if not isinstance(backbone, str):
        if getattr(backbone, "latent_kind", None):
            return backbone.latent_kind
        config = getattr(backbone, "config", None)
        names = [type(backbone).__name__, str(getattr(config, "model_type", ""))]
        names += list(getattr(config, "architectures", None) or [])
        backbone = " ".join(names)
    low = backbone.lower()
    for kind in _BACKBONES:
        if kind in low:
            return kind
    raise ValueError(f"Unknown latent backbone {backbone!r}; expected one of {list(_BACKBONES)}.")


def extract_answer(text, backbone):
    """The answer string in a decoded answer ``text``, or ``None`` if there is none.

    * COCONUT: the text after the last ``#`` (``"### 18"`` -> ``"18"``), first line, stripped.
    * CODI: the last number in the text (thousands commas removed: ``"1,234"`` -> ``"1234"``;
      ``"1,2,3"`` ends with the number ``"3"``; U+2212 becomes ``-``).
    * CoLaR: the text after the last ``Answer:``, first line, stripped.

    ``backbone`` is ``"coconut"``, ``"codi"`` or ``"colar"`` (case-insensitive;
    a class name such as ``"COCONUTGPT2"`` or model_type such as ``"codi_gpt2"``
    works too).  An empty answer gives ``None``.
    """
    if text is None:
        return None
    kind = _backbone_kind(backbone)
    text = str(text)
    if kind == "codi":
        found = _NUMBER_RE.findall(text)
        if not found:
            return None
        return found[-1].replace(",", "").replace(UNICODE_MINUS, "-")
    marker = "#" if kind == "coconut" else "Answer:"
    if marker not in text:
        return None
    answer = text.rsplit(marker, 1)[1].strip()
    answer = answer.split("\n", 1)[0].strip()
    return answer or None


def normalize_number(answer):
    """The answer as an exact number (``int`` if integral, else ``Fraction``), or ``None`` if it is not one.

    Accepts ``"1,234"``, ``"1,234,567.5"``, ``"1234.0"``, ``"-3"``, ``"\u22123"``, ``"$12"``, ``"12."``,
    ``"3/4"``, ``"1e3"``, ints and floats.  Rejects commas that are not thousands separators (``"1,2,3"``,
    ``"12,34"``), NaN and infinities.
    """
    if answer is None or isinstance(answer, bool):
        return None
    if isinstance(answer, Number):
        if isinstance(answer, float) and not math.isfinite(answer):
            return None
        try:
            value = Fraction(answer)
        except (TypeError, ValueError, OverflowError):
            return None
    else:
        s = str(answer).strip().replace(" ", "").replace(UNICODE_MINUS, "-")
        s = s.lstrip("$").rstrip(".").rstrip("%")
        if not s or not _NUMERIC_ANSWER_RE.fullmatch(s):
            return None
        try:
            value = Fraction(s.replace(",", ""))
        except (ValueError, ZeroDivisionError):
            return None
    return int(value) if value.denominator == 1 else value


def _is_non_finite(answer):
    """True for NaN / infinity as a float or as text (``"nan"``, ``"-Inf"``, ``"\u2212infinity"``)."""
    text = str(answer).strip().casefold().lstrip("+-" + UNICODE_MINUS)
    return text in _NON_FINITE


def answer_key(answer):
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


def answers_equal(a, b):
    """True if both answers are present and equal (numbers as numbers); ``None`` never equals anything."""
    ka, kb = answer_key(a), answer_key(b)
    return ka is not None and kb is not None and ka == kb


def _check_scores(answers, scores):
    answers, scores = list(answers), [float(s) for s in scores]
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores; give one score per answer.")
    return answers, scores


def majority_vote(answers):
    """The most frequent answer (first occurrence's form); ties -> earliest first occurrence; None if all are None."""
    counts, first = {}, {}
    for i, a in enumerate(answers):
        k = answer_key(a)
        if k is None:
            continue
        counts[k] = counts.get(k, 0) + 1
        first.setdefault(k, (i, a))
    if not counts:
        return None
    best = max(counts, key=lambda k: (counts[k], -first[k][0]))
    return first[best][1]


def best_of_n_index(scores):
    """Index of the highest score (earliest on ties; NaN counts as -inf)."""
    scores = [float(s) for s in scores]
    if not scores:
        raise ValueError("best_of_n needs at least one score.")
    clean = [-math.inf if math.isnan(s) else s for s in scores]
    return max(range(len(clean)), key=lambda i: (clean[i], -i))


def best_of_n(answers, scores):
    """The answer of the highest-scoring trajectory (earliest on ties).

    The trajectory is chosen by score alone, as in the method: if the best
    trajectory's answer could not be extracted the result is ``None`` (wrong).
    """
    answers, scores = _check_scores(answers, scores)
    if not answers:
        return None
    return answers[best_of_n_index(scores)]


def answer_weights(scores, weighting="softmax", temperature=1.0):
    """Non-negative weights from trajectory scores, used by :func:`weighted_vote`.

    * ``"softmax"`` (default): ``softmax(scores / temperature)``; shift invariant,
      so negative scores need no special handling.
    * ``"shift"``: ``score - min(scores)`` (the worst trajectory gets 0; if all
      scores are equal every trajectory gets weight 1).
    * ``"raw"``: the scores clipped at 0.
    NaN scores count as ``-inf`` (weight 0).
    """
    scores = [-math.inf if math.isnan(float(s)) else float(s) for s in scores]
    if not scores:
        return []
    finite = [s for s in scores if s != -math.inf]
    if weighting == "softmax":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not finite:
            return [1.0] * len(scores)
        top = max(scores)
        if top == math.inf:
            return [1.0 if s == math.inf else 0.0 for s in scores]
        return [math.exp((s - top) / temperature) for s in scores]
    if weighting == "shift":
        if not finite:
            return [1.0] * len(scores)
        low = min(finite)
        w = [0.0 if s == -math.inf else s - low for s in scores]
        if not any(w):
            return [0.0 if s == -math.inf else 1.0 for s in scores]
        return w
    if weighting == "raw":
        return [max(s, 0.0) for s in scores]
    raise ValueError(f"weighting must be 'softmax', 'shift' or 'raw', got {weighting!r}.")


def weighted_vote(answers, scores, weighting="softmax", temperature=1.0):
    """RM-weighted vote: the answer with the largest total weight (see :func:`answer_weights`).

    Weights default to a softmax over the N trajectory scores, so negative
    scores are fine.  None answers carry no vote.  Ties -> earliest first
    occurrence.  Returns None if no answer could be extracted.
    """
    answers, scores = _check_scores(answers, scores)
    weights = answer_weights(scores, weighting=weighting, temperature=temperature)
    mass, first = {}, {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        k = answer_key(a)
        if k is None:
            continue
        mass[k] = mass.get(k, 0.0) + w
        first.setdefault(k, (i, a))
    if not mass:
        return None
    best = max(mass, key=lambda k: (mass[k], -first[k][0]))
    return first[best][1]


def coverage(correct):
    """pass@N.

    ``correct`` is the N booleans of one question -> 1.0 if any is true else 0.0;
    or a list of such lists (one per question) -> the mean over questions.
    """
    correct = list(correct)
    if correct and not isinstance(correct[0], (bool, Number)) and hasattr(correct[0], "__iter__"):
        if not correct:
            return 0.0
        return sum(coverage(row) for row in correct) / len(correct)
    return 1.0 if any(bool(c) for c in correct) else 0.0


def pass_at_k(n, c, k):
    """Unbiased pass@k: ``1 - C(n-c, k) / C(n, k)`` for n samples of which c are right.

    Computed as ``1 - prod_{i=n-c+1..n} (1 - k/i)``, which never forms large
    binomials.  Requires ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    n, c, k = int(n), int(c), int(k)
    if n < 1:
        raise ValueError(f"pass_at_k needs n >= 1 samples, got n={n}.")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got c={c}, n={n}.")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}.")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
