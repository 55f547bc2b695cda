"""The one reader of question files and Hub question rows: ``{question, answer}`` pairs, or an error.

The ``latent_*`` lm-eval tasks, ``annotate`` and the benchmarks all read their
questions here, so every consumer accepts the same layouts and refuses the
same bad data.  A row without a question or without a numeric gold answer is
never passed on: it would be scored as a silent zero (or, with a junk gold
such as ``"nan"``, as a silent anything).  Instead :class:`QuestionFileError`
names the file (absolute path) or dataset, the first bad row (0-based index
and a short excerpt) and what to do.  Bad rows are skipped only on request,
and then a warning says how many rows were skipped and from where.

Accepted layouts: a JSON list of objects; JSON lines (one object a line); a
JSON object whose ``"data"`` or ``"test"`` member is such a list.  In a row,
the question is the first non-null of ``question`` / ``input`` / ``Question``
(non-empty text) and the gold answer the first non-null of ``answer`` /
``target`` / ``final_ans`` / ``Answer`` / ``label`` (text or a number).
GSM8K's raw answer (rationale, then ``#### 72``) is reduced to ``72``;
numbers in a file are read as exact decimals (``1e30`` is 10**30, never a
binary float) and written exactly (``5.0`` -> ``"5"``, ``1e30`` -> ``"1"``
and 30 zeros, ``0.1`` -> ``"0.1"``).
Gold text is otherwise kept as written (``"1,234"`` stays ``"1,234"``):
numbers are compared by :func:`hf_modeling.answers.answers_equal`,
and a gold answer is "a number" exactly when
:func:`~hf_modeling.answers.normalize_number` reads it.

Pure Python (no torch, no datasets), so any entry point may import it cheaply.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from hf_modeling.answers import normalize_number, number_text

__all__ = [
    "QUESTION_KEYS",
    "ANSWER_KEYS",
    "QuestionFileError",
    "Question",
    "gold_answer",
    "parse_row",
    "validate_rows",
    "resolve_path",
    "read_questions",
]

logger = logging.getLogger("lm_eval.latent_tts.questions")  # shown at lm-eval's default level

QUESTION_KEYS = ("question", "input", "Question")
ANSWER_KEYS = ("answer", "target", "final_ans", "Answer", "label")
LIST_KEYS = ("data", "test")  # a JSON object holding the rows under one of these members
DEFAULT_SKIP_OPTION = "skip_bad_rows=True"
_EXCERPT_CHARS = 160
_LAYOUT = "a JSON list of {question, answer} objects, or JSON lines with one such object a line"


class QuestionFileError(ValueError):
    """Questions that cannot be scored as they are: an unreadable or empty file, or a bad row.

    One class for every such problem, so callers (CLIs, tests) can catch exactly this.
    """


@dataclass(frozen=True)
class Question:
    """One validated question.

    ``index`` is the row's 0-based position in its source; it stays the same when
    other rows are skipped, so ids derived from it (annotation question ids) are stable.
    """

    index: int
    question: str
    answer: str
    # gold reasoning steps when the row has them (GSM8K-Aug "steps": ["<<47+8=55>>", ...]); extra information for
    # exact step labels (annotate --labels decoded), not part of what identifies the question
    steps: tuple[str, ...] = field(default=(), compare=False)

    def as_doc(self) -> dict[str, str]:
        """The ``{"question", "answer"}`` document the tasks and benchmarks work on."""
        return {"question": self.question, "answer": self.answer}


def _excerpt(value: Any) -> str:
    """A one-line (JSON escapes newlines), bounded rendering of a row for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "..."


def _first_field(row: Mapping, keys: tuple[str, ...], what: str) -> Any:
    """The first non-null value among ``keys``; a ValueError naming the keys if there is none."""
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    if any(key in row for key in keys):
        raise ValueError(f"the {what} is null")
    raise ValueError(f"it has no {what} (expected a field {' / '.join(repr(k) for k in keys)})")


def gold_answer(value: Any) -> str:
    """The gold answer text of a raw field value.

    Raises ValueError (saying why) unless the result is a number that
    :func:`~hf_modeling.answers.normalize_number` reads: a gold answer
    that is not a number could never be matched, and every row would score zero.
    """
    if value is None:
        raise ValueError("the gold answer is null")
    if isinstance(value, bool):
        raise ValueError(f"the gold answer {value!r} is a boolean, not a number")
    if isinstance(value, Integral):
        text = str(int(value))
    elif isinstance(value, (Real, Decimal)):  # a JSON number with a fraction or exponent is read as a Decimal
        number = normalize_number(value)  # exact: a float by its shortest decimal text
        if number is None:
            raise ValueError(f"the gold answer {value!r} is not a finite number")
        text = number_text(number)
    elif isinstance(value, str):
        text = value.rsplit("####", 1)[1] if "####" in value else value  # GSM8K: rationale, then '#### 72'
        text = text.strip()
        if not text:
            raise ValueError("the gold answer is empty" + (" after '####'" if "####" in value else ""))
    else:
        raise ValueError(f"the gold answer is not a number ({type(value).__name__})")
    if normalize_number(text) is None:
        raise ValueError(f"the gold answer {text!r} is not a number")
    return text


def parse_row(row: Any, index: int) -> Question:
    """One raw row -> :class:`Question`; ValueError saying what is wrong with it."""
    if not isinstance(row, Mapping):
        raise ValueError(f"the row is not an object with a question and an answer ({type(row).__name__})")
    question = _first_field(row, QUESTION_KEYS, "question")
    if not isinstance(question, str):
        raise ValueError(f"the question is not text ({type(question).__name__})")
    if not question.strip():
        raise ValueError("the question is empty")
    answer = gold_answer(_first_field(row, ANSWER_KEYS, "gold answer"))
    steps = row.get("steps")
    steps = tuple(steps) if isinstance(steps, list) and all(isinstance(x, str) for x in steps) else ()
    return Question(index=index, question=question, answer=answer, steps=steps)


def validate_rows(
    rows: Iterable[Any], source: str, *, skip_bad_rows: bool = False, skip_option: str = DEFAULT_SKIP_OPTION
) -> list[Question]:
    """Validate rows from ``source`` (a file path or e.g. ``"the Hub dataset openai/gsm8k"``).

    Raises :class:`QuestionFileError` at the first bad row, naming ``source``, the
    row and ``skip_option`` (how the caller's user turns skipping on).  With
    ``skip_bad_rows`` the bad rows are dropped and a warning gives their count;
    no rows at all, or no good row, is an error either way.
    """
    good: list[Question] = []
    bad: list[tuple[int, Any, ValueError]] = []
    for index, row in enumerate(rows):
        try:
            good.append(parse_row(row, index))
        except ValueError as err:
            if not skip_bad_rows:
                raise QuestionFileError(
                    f"{source}: row {index} (0-based) is unusable: {err}. Row {index}: {_excerpt(row)}. "
                    f"Correct or remove the row, or skip bad rows with {skip_option} (the skipped rows are counted "
                    "in a warning)."
                ) from None
            bad.append((index, row, err))
    total = len(good) + len(bad)
    if total == 0:
        raise QuestionFileError(f"{source} holds no rows; expected {_LAYOUT}.")
    if not good:
        index, row, err = bad[0]
        raise QuestionFileError(
            f"{source}: all {total} rows are unusable (even with bad rows skipped); the first, row {index}: {err}. "
            f"Row {index}: {_excerpt(row)}. Expected {_LAYOUT}, each with a numeric gold answer."
        )
    if bad:
        index, row, err = bad[0]
        logger.warning(
            "%s: skipped %d of %d rows (bad question or gold answer), kept %d. First skipped: row %d: %s.",
            source, len(bad), total, len(good), index, err,
        )
    return good


def _json_lines(path: Path, text: str) -> list[Any]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line, parse_float=Decimal))
        except json.JSONDecodeError as err:
            raise QuestionFileError(
                f"{path}, line {lineno}: not valid JSON ({err.msg}): {_excerpt(line)}. Expected {_LAYOUT}."
            ) from None
    return rows


def _raw_rows(path: Path) -> list[Any]:
    """The rows of a question file in any accepted layout, before validation."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise QuestionFileError(f"{path} is not UTF-8 text ({err.reason}); expected {_LAYOUT}.") from None
    if not text.strip():
        raise QuestionFileError(f"{path} is empty; expected {_LAYOUT}.")
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            raise QuestionFileError(
                f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}. Expected {_LAYOUT}."
            ) from None
        return _json_lines(path, text)
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in LIST_KEYS:
            if key in data:
                if not isinstance(data[key], list):
                    raise QuestionFileError(
                        f"{path}: member {key!r} is a JSON {type(data[key]).__name__}; expected {_LAYOUT}."
                    )
                return data[key]
        return [data]  # JSON lines holding a single row
    raise QuestionFileError(f"{path} holds a JSON {type(data).__name__}; expected {_LAYOUT}.")


def resolve_path(path: str | os.PathLike) -> Path:
    """The absolute path a question file setting means (``~`` expanded, relative to the current directory)."""
    return Path(os.path.expanduser(os.fspath(path))).resolve()


def read_questions(
    path: str | os.PathLike, *, skip_bad_rows: bool = False, skip_option: str = DEFAULT_SKIP_OPTION
) -> list[Question]:
    """The validated questions of a local file (see the module docstring for layouts and rules).

    ``path`` may be relative (to the current directory) or start with ``~``;
    messages name the absolute path.  A missing file raises FileNotFoundError,
    anything else unusable :class:`QuestionFileError`.
    """
    path = resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Question file {path} does not exist; expected {_LAYOUT}.")
    return validate_rows(_raw_rows(path), str(path), skip_bad_rows=skip_bad_rows, skip_option=skip_option)
