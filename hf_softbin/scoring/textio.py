"""Reading text input line by line, and the check every number passes before it is printed or used."""

import math
import os
import sys
from collections.abc import Iterator


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file ("-": stdin), without line ends; a line that is not UTF-8 is an error naming it."""
    if os.fspath(path) == "-":
        return list(_decode(sys.stdin.buffer, "stdin"))
    with open(path, "rb") as handle:
        return list(_decode(handle, os.fspath(path)))


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line of a UTF-8 text file that is not blank."""
    for lineno, line in enumerate(read_lines(path), start=1):
        if line.strip():
            yield lineno, line


def _decode(handle, path: str) -> Iterator[str]:
    for lineno, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: line {lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from None


def finite_number(value, what: str) -> float:
    """`value` as a float; anything that is not a finite number is an error naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)
