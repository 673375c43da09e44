r"""Typed, validated settings: one way to declare a knob, its range and its meaning.

Every configuration type in Nima — `GPTConfig`, `GenerationConfig`, the sections of a training
YAML file — is a dataclass whose fields are declared with `setting(default, doc, ...)`: the
default, a one-line meaning, and the allowed range or choices. `validate(obj, owner)` then
checks every field against its type hint and range, so all of them report a bad value the same
way, naming the field and the value:

    GPTConfig.n_layer: must be >= 1, got 0
    GenerationConfig.top_p: must be <= 1, got 1.5
    optimizer.lr: expected float, got str 'fast'

Types are strict — `True` is not an int — except that an int is accepted where a float is
expected (`lr: 1` means 1.0), and so is a string such as `1e-3`, which YAML 1.1 (PyYAML)
reads as a string because it has no decimal point. Floats must be finite unless the field
says otherwise.

`check_int` is the same check for a function argument that is not a setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
import reprlib
import types
import typing
from typing import Any

__all__ = ["SettingsError", "check_int", "check_known", "check_value", "reference_rows", "setting",
           "shown", "validate"]


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message starts with its
    dotted name (`GPTConfig.n_head: must be >= 1, got 0`)."""


def setting(default: Any, doc: str, *, gt: float | None = None, ge: float | None = None,
            lt: float | None = None, le: float | None = None,
            choices: tuple[Any, ...] | None = None, finite: bool = True) -> Any:
    """A dataclass field carrying its meaning and allowed range in `metadata`."""
    return dataclasses.field(default=default, metadata=dict(
        doc=doc, gt=gt, ge=ge, lt=lt, le=le, choices=choices, finite=finite))


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_NO_RANGE = dict(gt=None, ge=None, lt=None, le=None, choices=None, finite=True)
_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 50, 50, 50


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: an error message stays one short line. The
    repr itself is bounded (`reprlib`: a few levels, a few items each), so a value built
    from billions of shared references costs no more to show than a small one."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {shown(value)}"


# --8<-- [start:check_value]
def check_value(name: str, value: Any, hint: Any, meta: Any = None) -> Any:
    """Check `value` against the type `hint` and the range in `meta` (a field's metadata);
    return it normalized (an int or a numeric string given for a float becomes a float)."""
    meta = {**_NO_RANGE, **(meta or {})}
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise SettingsError(f"{name}: must not be null")
    base = next(t for t in options if t is not type(None))
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[str, ...]: a list of any length
            if not isinstance(value, list | tuple):
                raise SettingsError(f"{name}: expected a list, got {_kind(value)}")
            args = (args[0],) * len(value)
        elif not isinstance(value, list | tuple) or len(value) != len(args):  # Adam's betas
            raise SettingsError(f"{name}: expected a list of {len(args)} values, got "
                                f"{_kind(value)}")
        return tuple(check_value(f"{name}[{i}]", v, args[i], meta) for i, v in enumerate(value))
    if base is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string; mean the number
    is_bool = isinstance(value, bool)  # bool subclasses int, but `true` is not a number
    if base is float and isinstance(value, int) and not is_bool:
        value = float(value)
    if not isinstance(value, base) or (is_bool and base is not bool):
        raise SettingsError(f"{name}: expected {base.__name__}, got {_kind(value)}")
    if base is float and meta["finite"] and not math.isfinite(value):
        raise SettingsError(f"{name}: must be a finite number, got {value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise SettingsError(f"{name}: must be one of {', '.join(map(repr, meta['choices']))}, "
                            f"got {shown(value)}")
    for op, bound, bad in (("> ", meta["gt"], lambda v, b: v <= b),
                           (">= ", meta["ge"], lambda v, b: v < b),
                           ("< ", meta["lt"], lambda v, b: v >= b),
                           ("<= ", meta["le"], lambda v, b: v > b)):
        if bound is not None and bad(value, bound):
            limit = bound if isinstance(bound, int) else f"{bound:g}"
            raise SettingsError(f"{name}: must be {op}{limit}, got {shown(value)}")
    return value
# --8<-- [end:check_value]


def validate(obj: Any, owner: str) -> None:
    """Check and normalize every field of the dataclass instance `obj` in place; errors are
    named `owner.field`."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = check_value(f"{owner}.{f.name}", getattr(obj, f.name), hints[f.name],
                            f.metadata)
        object.__setattr__(obj, f.name, value)


def check_known(name: str, key: Any, known: typing.Iterable[str]) -> None:
    """Raise unless `key` is one of `known`, suggesting the closest name."""
    known = list(known)
    if key in known:
        return
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    raise SettingsError(f"{name}: unknown key; {hint}")


def check_int(name: str, value: Any, *, ge: int | None = None) -> int:
    """`value` as an int if it is one (a NumPy integer too, never a bool) and `>= ge`, else a
    `SettingsError` naming `name` and the value."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)  # a NumPy integer counts
    return check_value(name, value, int, {"ge": ge})


def reference_rows(cls: type) -> list[dict[str, str]]:
    """One row per field of the settings dataclass `cls`: its key, type, default (as YAML
    writes it), range and meaning — what `docs/configuration.md` shows for every section."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        meta = {**_NO_RANGE, **f.metadata}
        hint = hints[f.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        names = [_type_name(t) for t in options]
        bounds = [f"{op}{b:g}" for op, b in (("> ", meta["gt"]), ("≥ ", meta["ge"]),
                                              ("< ", meta["lt"]), ("≤ ", meta["le"]))
                  if b is not None]
        choices = meta["choices"] and ", ".join(f"`{c}`" for c in meta["choices"])
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        rows.append({"key": f"`{f.name}`", "type": " | ".join(names),
                     "default": f"`{json_like(default)}`",
                     "range": choices or ", ".join(bounds) or "—",
                     "meaning": meta.get("doc", "")})
    return rows


def _type_name(t: Any) -> str:
    if t is type(None):
        return "null"
    if typing.get_origin(t) is tuple:
        args = typing.get_args(t)
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"[{inner}, ...]" if Ellipsis in args else f"[{inner}]"
    return t.__name__


def json_like(value: Any) -> str:
    """A default as a YAML file would spell it: `null`, `true`, `[0.9, 0.99]`, `"\\n"`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (not value.strip() or value != value.strip()):
        return '"' + value.encode("unicode_escape").decode() + '"'
    if isinstance(value, list):
        return "[" + ", ".join(json_like(v) for v in value) + "]"
    if isinstance(value, float) and "e" in repr(value) and "." not in repr(value):
        return repr(value).replace("e", ".0e")  # 1.0e-08: YAML 1.1 reads 1e-08 as a string
    return str(value)
