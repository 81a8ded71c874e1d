"""The engine's error for bad configuration (its own module, so the config and the checkpoint reader share it), and
`echo`, how every such message shows a value it quotes."""

from __future__ import annotations

import reprlib
from typing import Any

WIDTH = 80  # the most characters of a value an error message quotes


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the file and key."""


def echo(value: Any, width: int = WIDTH) -> str:
    """`value` as an error message quotes it: its repr (`'cat'`, `[0.9]`, `12`), at most `width` characters, a longer
    one cut with `…` and its full length (`'xxxx…' (62,914,560 characters)`).

    The whole repr is never made: a value may be a 60 MB string, or a YAML alias bomb whose repr is 300 MB. Control
    characters, bidi controls and other unprintable characters come out escaped (`'\\x1b'`), as repr writes them.
    """
    if isinstance(value, str):
        text = repr(value[: width + 1])
        if len(value) <= width and len(text) <= width + 2:
            return text
        return f"{text[:width]}…{text[0]} ({len(value):,} characters)"
    if isinstance(value, (bytes, bytearray)):
        text = repr(value[: width + 1])
        if len(value) <= width and len(text) <= width + 3:
            return text
        return f"{text[:width]}…{text[-1]} ({len(value):,} bytes)"
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            text = str(value)
        except ValueError:  # more digits than Python converts (4300)
            return f"an integer of {value.bit_length():,} bits"
        digits = len(text.lstrip("-"))
        return text if len(text) <= width else f"{text[: width - 8]}…{text[-4:]} ({digits:,} digits)"
    text = _SHORT.repr(value)
    if len(text) <= width:
        return text
    try:
        n = len(value)
    except TypeError:
        return f"{text[:width]}…"
    return f"{text[:width]}… ({n:,} item{'s' * (n != 1)})"


class _Short(reprlib.Repr):
    """reprlib with room for a line: a few levels and items, each string and number cut (its own `…`)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict = 3, 6
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 8
        self.maxstring = self.maxlong = self.maxother = WIDTH

    def repr_str(self, x: str, level: int) -> str:
        return echo(x, self.maxstring)

    def repr_int(self, x: int, level: int) -> str:
        return echo(x, self.maxlong)

    def repr_bytes(self, x: bytes, level: int) -> str:
        return echo(x, self.maxstring)

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return echo(x, self.maxstring)


_SHORT = _Short()


def cut(text: str, width: int = 2 * WIDTH) -> str:
    """A fragment of a message that may quote its input (a parser's complaint, a library's error), cut to `width`
    characters with `…`."""
    text = str(text)
    return text if len(text) <= width else f"{text[:width]}…"


def echo_key(key: Any) -> str:
    """A key as a message names it: as it is written when it is a short printable string (`d_model`), else quoted and
    cut by `echo` (a key of 60 MB, one holding an escape character or a bidi control)."""
    if isinstance(key, str) and 0 < len(key) <= WIDTH // 2 and key.isprintable():
        return key
    return echo(key)
