"""Typed measurement records, and claim texts whose numbers are filled in from them.

A record is what one ``measure(...)`` call leaves in the ledger::

    {"name": "dot_variance", "value": 4.02, "params": {"d_k": 4}, "interval": [3.9, 4.1],
     "confidence": 0.95, "unit": "ratio", "alpha": null, "power": null, "alternative": null,
     "details": {"n": 100000, "closed_form": 4}}

The name is a plain identifier, so a claim's condition can quote it: ``{dot_variance[d_k=4]:.3g}`` is
the value of the record with ``params["d_k"] == 4`` in format ``.3g``; ``{name.low}`` and
``{name.high}`` are the interval's bounds, ``{name.KEY}`` a typed field, a param, a detail, or a key
of a dictionary value, and more dotted steps index further (``{grid.0.2:.0%}``: row 0, column 2). A
placeholder that matches no record (or several) is an error, never a guess.
"""

from __future__ import annotations

import json
import math
import numbers
import re

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARAM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Keys of a record besides ``details``; ``details`` holds every other keyword of ``measure``.
TYPED = ("name", "value", "params", "interval", "confidence", "unit", "alpha", "power", "alternative")
#: ``{name}``, ``{name.attr}``, ``{name[k=v,k2=v2]}``, each optionally followed by ``:format-spec``.
PLACEHOLDER = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<params>[^\]]*)\])?"
                         r"(?:\.(?P<attr>[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*))?(?::(?P<spec>[^{}]*))?\}")


def to_jsonable(value, *, _depth: int = 0):
    """``value`` as plain JSON data (numpy/torch arrays and scalars, tuples, sets, fractions converted).

    Non-finite floats become the strings "NaN", "Infinity", "-Infinity" so the output is strict JSON.
    Raises TypeError naming the type for anything else.
    """
    if _depth > 50:
        raise TypeError("measurement nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) or (isinstance(value, numbers.Real) and not hasattr(value, "tolist")):
        f = float(value)
        if math.isfinite(f):
            return f
        return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, _depth=_depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v, _depth=_depth + 1) for v in value), key=repr)
    detach = getattr(value, "detach", None)  # torch tensors
    if callable(detach):
        value = detach().cpu()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return to_jsonable(tolist(), _depth=_depth + 1)
    if getattr(value, "is_Number", False):  # sympy numbers: exact text
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON-serialisable; convert it "
                    "(str for symbolic expressions, float/list for numbers and arrays)")


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rate(x, what: str, name: str, *, closed: bool = False) -> float:
    x = to_jsonable(x)
    low_ok = x >= 0 if closed else x > 0
    high_ok = x <= 1 if closed else x < 1
    if not (_real(x) and low_ok and high_ok):
        bounds = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"measure({name!r}): {what} must be a number in {bounds}, got {x!r}")
    return float(x)


def make_record(name, value, *, params=None, interval=None, confidence=None, unit=None, alpha=None, power=None,
                alternative=None, details=None) -> dict:
    """One typed record (validated, JSON data); raises TypeError/ValueError saying what is wrong."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TypeError(f"measure(): name must be a plain identifier such as 'dot_variance', got {name!r}; "
                        "put what varies in params={...}")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise TypeError(f"measure({name!r}): params must be a dict such as {{'d_k': 4}}, got {type(params).__name__}")
    params = to_jsonable(params)
    for key, v in params.items():
        if not PARAM_KEY.match(key) or not (v is None or isinstance(v, (str, bool, int, float))):
            raise TypeError(f"measure({name!r}): params[{key!r}] must be an identifier key with a scalar value, got {v!r}")
    if interval is not None:
        interval = to_jsonable(interval)
        if not (isinstance(interval, list) and len(interval) == 2 and all(_real(b) for b in interval)
                and interval[0] <= interval[1]):
            raise ValueError(f"measure({name!r}): interval must be [low, high] with finite low <= high, got {interval!r}")
        interval = [float(b) for b in interval]
    if confidence is not None:
        confidence = _rate(confidence, "confidence", name)
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise TypeError(f"measure({name!r}): unit must be a non-empty string such as 's', 'bytes', 'FLOPs', 'ratio'")
    if alpha is not None:
        alpha = _rate(alpha, "alpha (a false-alarm rate)", name)
        missing = [k for k, v in (("power", power), ("alternative", alternative), ("interval", interval)) if v is None]
        if missing:
            raise ValueError(f"measure({name!r}): a statistical decision (alpha=) also records {', '.join(missing)}: "
                             "its interval, its power against the wrong alternative, and that alternative in words")
        if confidence is None:
            confidence = 1.0 - alpha
        elif not math.isclose(confidence, 1.0 - alpha, rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"measure({name!r}): confidence {confidence!r} is not 1 - alpha = {1 - alpha!r}")
    if power is not None:
        power = _rate(power, "power", name, closed=True)
    if alternative is not None and (not isinstance(alternative, str) or not alternative.strip()):
        raise TypeError(f"measure({name!r}): alternative is the wrong alternative in words, with its number")
    return {"name": name, "value": to_jsonable(value), "params": params, "interval": interval, "confidence": confidence,
            "unit": unit, "alpha": alpha, "power": power, "alternative": alternative,
            "details": to_jsonable(details or {})}


# -- placeholders ----------------------------------------------------------------------------------------
class PlaceholderError(ValueError):
    """A placeholder of a claim text that the claim's measurements cannot fill."""


def _parse_params(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    wanted = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise PlaceholderError(f"selector [{text}] must read [key=value, ...]")
        wanted[key.strip()] = value.strip()
    return wanted


def _matches(value, wanted: str) -> bool:
    """A param against the text of a selector: numbers by value (``base=10000`` selects 10000.0), else as text."""
    if _real(value):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return (json.dumps(value) if not isinstance(value, str) else value) == wanted


def select(records: list[dict], name: str, wanted: dict[str, str]) -> dict:
    """The one record called ``name`` whose params include ``wanted``."""
    named = [r for r in records if r["name"] == name]
    hits = [r for r in named if all(k in r["params"] and _matches(r["params"][k], v) for k, v in wanted.items())]
    shown = f"{name}[{', '.join(f'{k}={v}' for k, v in wanted.items())}]" if wanted else name
    if not hits:
        if named:
            seen = "; ".join(json.dumps(r["params"]) for r in named[:6])
            raise PlaceholderError(f"{{{shown}}}: no record with those params (recorded params: {seen})")
        raise PlaceholderError(f"{{{shown}}}: no measurement of this claim is called {name!r}")
    if len(hits) > 1:
        seen = "; ".join(f"{json.dumps(r['params'])} from {r.get('nodeid', '?')}" for r in hits[:6])
        raise PlaceholderError(f"{{{shown}}}: {len(hits)} records match ({seen}); select one with [key=value]")
    return hits[0]


def _field(record: dict, attr: str | None):
    """The value, or what ``attr`` names: ``low``/``high`` (interval), a typed field, a param, a detail, a key
    or index of the value; further dotted steps index into what the first step found (``value.0.2``)."""
    if attr is None:
        return record["value"]
    first, *rest = attr.split(".")
    if first == "value":
        found = record["value"]
    elif first in ("low", "high"):
        if record["interval"] is None:
            raise PlaceholderError(f"{record['name']} has no interval, so .{first} is undefined")
        found = record["interval"][0 if first == "low" else 1]
    elif first in TYPED and record.get(first) is not None:
        found = record[first]
    elif first in record.get("params", {}):
        found = record["params"][first]
    elif first in record.get("details", {}):
        found = record["details"][first]
    else:
        found, rest = record["value"], [first, *rest]
    for step in rest:
        if isinstance(found, dict) and step in found:
            found = found[step]
        elif isinstance(found, list) and step.isdigit() and int(step) < len(found):
            found = found[int(step)]
        else:
            raise PlaceholderError(f"{record['name']} has no field, param, detail or value key {attr!r}")
    return found


def _format(value, spec: str | None) -> str:
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError) as exc:
            raise PlaceholderError(f"cannot format {value!r} with {spec!r}: {exc}") from None
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def placeholders(text: str) -> list[str]:
    """The placeholders of ``text``, as written."""
    return [m.group(0) for m in PLACEHOLDER.finditer(text or "")]


def render(text: str, records: list[dict]) -> tuple[str, list[str]]:
    """``text`` with every placeholder filled from ``records``; and the errors, one sentence each.

    An unfilled placeholder stays visible as ``⟨{...}: not measured⟩`` in the returned text.
    """
    errors: list[str] = []

    def fill(match: re.Match) -> str:
        try:
            record = select(records, match.group("name"), _parse_params(match.group("params")))
            return _format(_field(record, match.group("attr")), match.group("spec"))
        except PlaceholderError as exc:
            errors.append(str(exc))
            return f"⟨{match.group(0)}: not measured⟩"

    return PLACEHOLDER.sub(fill, text), errors


#: What may stay as a literal in a condition: backtick spans (formulas, the claim's own numbers) and
#: placeholders. Any other digit is a number typed by hand.
_CODE = re.compile(r"`[^`]*`")


def typed_numbers(text: str) -> list[str]:
    """Words of ``text`` holding a digit outside backticks and placeholders (numbers typed by hand)."""
    stripped = PLACEHOLDER.sub(" ", _CODE.sub(" ", text or ""))
    return re.findall(r"[^\s]*\d[^\s]*", stripped)
