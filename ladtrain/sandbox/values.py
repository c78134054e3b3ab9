"""Plain values as text: the only thing that crosses between the judge and the sandboxed candidate.

Standalone (standard library only): its source text is also prepended to the programs run inside the
sandbox (:mod:`ladtrain.sandbox.boot`) and in the judge (:mod:`ladtrain.sandbox.judge`).

A plain value is ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes`` or a ``list``,
``tuple``, ``dict``, ``set`` or ``frozenset`` of plain values, each of exactly that type (a subclass
is *not* plain: an ``int`` subclass with an ``__eq__`` that is always true cannot be sent). The text is
JSON in which containers other than lists, and the numbers JSON lacks, are one-key objects::

    (1, 2) -> {"t": [1, 2]}      {1: "a"} -> {"d": [[1, "a"]]}     {1} -> {"s": [1]}
    b"x" -> {"b": "78"}          1j -> {"c": [0.0, 1.0]}           float("inf") -> {"f": "inf"}
    2**4000 -> {"i": "1000...0"} (hexadecimal: ints of more than 300 digits; decimal text of more than
                                  4300 digits is refused by Python's int conversion limit)

``decode`` builds fresh builtins from the text (a wrong tag or shape is a :class:`ValueError`), so
whatever the other side is, the receiver only ever holds exact builtin values.
"""

import json
import math

_MAX_DEPTH = 100
_BIG = 10**300


class NotPlain(TypeError):
    """The value (or something inside it) is not a plain value; ``args[0]`` names its type."""


def _enc(v, depth):
    if depth > _MAX_DEPTH:
        raise NotPlain("nesting deeper than %d" % _MAX_DEPTH)
    t = type(v)
    if t is int and (v >= _BIG or v <= -_BIG):
        return {"i": format(v, "x")}
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        return v if math.isfinite(v) else {"f": repr(v)}
    if t is list:
        return [_enc(x, depth + 1) for x in v]
    if t is tuple:
        return {"t": [_enc(x, depth + 1) for x in v]}
    if t is dict:
        return {"d": [[_enc(k, depth + 1), _enc(x, depth + 1)] for k, x in v.items()]}
    if t is set or t is frozenset:
        return {"s" if t is set else "fs": [_enc(x, depth + 1) for x in v]}
    if t is bytes:
        return {"b": v.hex()}
    if t is complex:
        return {"c": [_enc(v.real, depth + 1), _enc(v.imag, depth + 1)]}
    raise NotPlain(t.__name__ if isinstance(t.__name__, str) else "?")


def encode(value) -> str:
    """The text of a plain value; :class:`NotPlain` for anything else."""
    return json.dumps(_enc(value, 0), ensure_ascii=True, allow_nan=False)


_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _dec(v, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("nesting too deep")
    t = type(v)
    if v is None or t is bool or t is int or t is str or t is float:
        return v
    if t is list:
        return [_dec(x, depth + 1) for x in v]
    if t is not dict or len(v) != 1:
        raise ValueError("not a plain value")
    (tag, body), = v.items()
    if tag == "f" and type(body) is str and body in _FLOATS:
        return _FLOATS[body]
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "i" and type(body) is str and body.lstrip("-").isalnum():
        return int(body, 16)
    if type(body) is not list:
        raise ValueError("not a plain value")
    items = [_dec(x, depth + 1) for x in body]
    if tag == "t":
        return tuple(items)
    if tag == "s":
        return set(items)
    if tag == "fs":
        return frozenset(items)
    if tag == "c" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(items[0], items[1])
    if tag == "d" and all(type(x) is list and len(x) == 2 for x in items):
        return {k: x for k, x in items}
    raise ValueError("not a plain value")


def decode(text: str):
    """The plain value written by :func:`encode`; ValueError (or RecursionError) on anything else."""
    return _dec(json.loads(text, parse_constant=_no_constant), 0)


def _no_constant(name):
    raise ValueError("bare %s is not a plain value" % name)
