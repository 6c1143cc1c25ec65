"""The common cutout file read without astropy: one float cube or image in the primary HDU.

``astropy.io.fits`` spends ~1.5 ms a cutout opening the file, building card objects and parsing
each value on access (it consults its configuration on every card) -- most of a scan's reading
time for a 72x72x3 cube. :func:`read_simple_cube` reads such a file in ~0.2 ms: the header
blocks parsed by FITS' fixed card format (Standard 4.0, sect. 4), the data by ``np.frombuffer``.
It answers only when everything is plain -- a single HDU (the file is exactly header + padded
data), ``NAXIS`` 3 (a cube) or 2 (a per-band file), ``BITPIX`` -32 or -64, no ``BSCALE`` or
``BZERO``, no ``CONTINUE`` or complex values, ASCII cards (``HIERARCH`` keywords are read, as PS1 writes
them) -- and returns ``None``
otherwise, so that astropy reads it (and reports whatever is wrong). The two paths are tested
to give identical cutouts. Every value is checked when the header is read and parsed when it
is first used (:class:`FastHeader`): a scan uses ~20 of a survey header's cards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from .config import MAX_CUTOUT_PIXELS

__all__ = ["read_simple_cube", "parse_value"]

BLOCK = 2880
#: a header this long is not a cutout's: left to astropy
MAX_HEADER_BLOCKS = 36
#: the largest file the fast path can read (a longer header or more pixels are astropy's)
_MAX_FILE = MAX_HEADER_BLOCKS * BLOCK + -(-MAX_CUTOUT_PIXELS * 8 // BLOCK) * BLOCK
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$")


class _Unsupported(Exception):
    """Anything the fast path does not read exactly as astropy would."""


def parse_value(text: str):
    """The value of a card's value field (bytes 11-80) as astropy gives it: str (trailing
    blanks removed, ``''`` unescaped), bool, int or float.

    Raises
    ------
    _Unsupported
        Complex numbers and anything else unusual.
    """
    s = text.lstrip()
    if s.startswith("'"):
        out, i = [], 1
        while True:
            j = s.find("'", i)
            if j < 0:
                raise _Unsupported("unterminated string")
            out.append(s[i:j])
            if s[j + 1:j + 2] == "'":  # an escaped quote
                out.append("'")
                i = j + 2
                continue
            rest = s[j + 1:].strip()
            if rest and not rest.startswith("/"):
                raise _Unsupported("text after a string")
            return "".join(out).rstrip()
    v = s.split("/", 1)[0].strip()
    if v == "":
        raise _Unsupported("no value")  # astropy's Undefined
    if v == "T":
        return True
    if v == "F":
        return False
    if _INT.match(v):
        return int(v)
    if _FLOAT.match(v):
        return float(v.replace("D", "E").replace("d", "e"))
    raise _Unsupported(f"value {v[:20]!r}")


# The value fields parse_value accepts, as one pattern: _read_header checks every card's value
# with one C-level match over them all (joined by "\xff", which no ASCII card holds), and
# FastHeader parses a value only when it is read. A PS1 stack's file has ~235 cards, of which a
# scan reads ~20 (bench/RESULTS.md, "Reading a header"). Tested to accept exactly what
# parse_value accepts. Each part can match a value in one way only: with "\d+\.?\d*" an
# integer splits many ways, and a bad value after many integers took the match exponential
# time (found in review: 37 s for 12 cards).
_VALUE = (r"\s*(?:'(?:[^'\xff]|'')*'|T|F|[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[EeDd][+-]?\d+)?)"
          r"\s*(?:/[^\xff]*)?")
_SEP = "\xff"
_VALUES = re.compile(f"{_VALUE}(?:{_SEP}{_VALUE})*")
#: a card: keyword field, value indicator, the rest
_CARD = re.compile(r"(.{8})(.{2})(.{70})", re.S)


class FastHeader(Mapping):
    """A header read by :func:`read_simple_cube`: keyword -> value (the first card of each
    keyword, as ``astropy.io.fits.Header[key]`` gives it); the readers use it as a Header.

    Every value was checked when the header was read; each is parsed on first access."""

    __slots__ = ("_raw", "_parsed")

    def __init__(self, raw: dict[str, str] | None = None):
        self._raw = {} if raw is None else raw  # keyword -> its value field's text
        self._parsed: dict = {}

    def __getitem__(self, key):
        if key in self._parsed:
            return self._parsed[key]
        value = self._parsed[key] = parse_value(self._raw[key])  # KeyError: not in the header
        return value

    def get(self, key, default=None):
        return self[key] if key in self._raw else default

    def __contains__(self, key) -> bool:
        return key in self._raw

    def __iter__(self):
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def keys(self):
        return self._raw.keys()

    def __repr__(self) -> str:
        return f"FastHeader({dict(self.items())!r})"


def _end_card(buf: bytes) -> int:
    """The byte offset of the ``END`` card (a card whose keyword field is ``END``)."""
    i = 0
    limit = min(len(buf), MAX_HEADER_BLOCKS * BLOCK)
    while True:
        i = buf.find(b"END     ", i, limit)
        if i < 0:
            raise _Unsupported("no END card in the first blocks, or the file ends first")
        if i % 80 == 0:
            return i
        i += 1


def _read_header(buf: bytes) -> tuple[FastHeader, int]:
    """The header at the start of ``buf`` (the file's bytes) and its length in bytes.

    The cards are split by one regular expression and checked by C-level string methods and
    one match of every value (:data:`_VALUES`), not card by card in Python (only ``HIERARCH``
    cards are): the card loop was the largest part of reading a PS1 stack's ~235 cards. A
    ``HIERARCH`` keyword that is also a plain one is left to astropy."""
    end = _end_card(buf)
    length = (end // BLOCK + 1) * BLOCK
    if len(buf) < length:
        raise _Unsupported("short header")
    text = buf[:end].decode("latin-1")  # bytes after END may be anything; cards must be ASCII
    if not text.isascii():
        raise _Unsupported("non-ASCII card")
    cards = _CARD.findall(text)  # (keyword field, value indicator, the rest) of each card
    fields = [k for k, _, _ in cards]
    if not "".join(fields).isprintable():
        raise _Unsupported("non-printable keyword")
    if "CONTINUE" in fields:
        raise _Unsupported("CONTINUE")  # long strings: astropy's
    values = [(k.rstrip(), v) for k, ind, v in cards if ind == "= " and k != "HIERARCH"]
    keys = "".join(k for k, _ in values)
    if keys.upper() != keys:
        raise _Unsupported("lower-case keyword")
    if "HIERARCH" in fields:
        plain = {k for k, _ in values}
        for k, ind, v in cards:
            if k == "HIERARCH":  # ESO's long keywords (PS1: FPA.ZP): HIERARCH KEY = value
                key, eq, value = (ind + v)[1:].partition("=")
                key = " ".join(key.split())
                if not eq or not key or key.upper() != key or key in plain:
                    raise _Unsupported("HIERARCH card")
                values.append((key, value))
    raw = dict(values)
    if len(raw) != len(values):  # a keyword twice: its first card's value, as astropy's [key]
        raw = {}
        for k, v in values:
            raw.setdefault(k, v)
    if values and not _VALUES.fullmatch(_SEP.join(v for _, v in values)):
        raise _Unsupported("a value parse_value does not read")
    return FastHeader(raw), length


def read_simple_cube(path: str) -> tuple[np.ndarray, FastHeader] | None:
    """``(data float32, header)`` of a file that is one plain float cube ``(bands, y, x)`` or
    image ``(y, x)`` (a per-band file), else ``None`` (read it with astropy). Never raises for
    a bad file: astropy reports those."""
    try:
        # unbuffered: a BufferedReader's read() after read(10) and seek(0) is several times
        # slower than FileIO's readall() on a cutout-sized file (bench/RESULTS.md)
        with open(path, "rb", buffering=0) as fh:
            if os.fstat(fh.fileno()).st_size > _MAX_FILE or fh.read(10) != b"SIMPLE  = ":
                return None  # too large for a plain cutout (below), or not FITS
            fh.seek(0)
            buf = fh.readall()  # one read: a cutout file is small
        head, start = _read_header(buf)
    except (OSError, _Unsupported):
        return None
    naxis = head.get("NAXIS")
    if head.get("SIMPLE") is not True or naxis not in (2, 3):
        return None
    bitpix = head.get("BITPIX")
    if bitpix not in (-32, -64) or "BSCALE" in head or "BZERO" in head or "BSOFTEN" in head:
        return None  # scaled, or PS1 asinh-compressed (lensscore.readers.linear_pixels)
    shape = tuple(head.get(f"NAXIS{k}") for k in range(naxis, 0, -1))
    if not all(type(v) is int and v > 0 for v in shape):  # not bool: NAXIS1 = T
        return None
    npix = int(np.prod(shape))
    if npix > MAX_CUTOUT_PIXELS or head.get("GROUPS") is True:
        return None
    nbytes = npix * abs(bitpix) // 8
    if len(buf) != start + -(-nbytes // BLOCK) * BLOCK:
        return None  # extensions follow, or padding is missing: astropy's case
    data = np.frombuffer(buf, dtype=">f4" if bitpix == -32 else ">f8", count=npix,
                         offset=start).reshape(shape)
    return data.astype(np.float32), head
