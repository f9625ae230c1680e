"""Run properties against rows, collect one result per (implementation, property), report them.

A row is an attention implementation (``Implementation``) or a model adapter (``ModelRow``). Each
property runs as a hypothesis search (derandomised, no example database, so a run is reproducible
and writes nothing to the working folder); its shrunk failing case becomes the reproduction. An
expected failure is strict: if it passes, the result is ``xpassed`` and the run fails.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings

from .implementations import (
    BUILTIN,
    Implementation,
    UsageError,
    as_implementation,
    load_factory,
)
from .properties import PROPERTIES, PropertyFailure
from .thirdparty import KNOWN_FAILURES as THIRD_PARTY_KNOWN_FAILURES

OUTCOMES = ("passed", "failed", "xfailed", "xpassed", "not-applicable")
BAD = ("failed", "xpassed")
_TORCH_41508 = ("pytorch #41508: nn.MultiheadAttention with need_weights=True returns NaN outputs and "
                "weights for a query whose keys are all masked")
#: (implementation, property) -> why it fails upstream. Strict: an upstream fix turns it into an error.
KNOWN_FAILURES = {
    ("torch-mha-weights", "fully-masked-row"): _TORCH_41508,
    ("torch-mha-weights", "no-nan"): _TORCH_41508,
    **THIRD_PARTY_KNOWN_FAILURES,
}


class NotApplicable(Exception):
    """A property that does not apply to a row (a model without a cache, with positions, ...)."""


@dataclass
class Result:
    implementation: str
    property: str
    outcome: str
    diagnosis: str = ""
    reproduction: str = ""


def all_properties() -> dict:
    from .models import MODEL_PROPERTIES

    return {**PROPERTIES, **MODEL_PROPERTIES}


def properties_for(row) -> list[str]:
    from .models import MODEL_PROPERTIES, ModelRow

    return list(MODEL_PROPERTIES if isinstance(row, ModelRow) else PROPERTIES)


def load_row(spec: str):
    """A factory spec -> an attention ``Implementation`` or a ``ModelRow``."""
    return row_from(load_factory(spec), spec)


def ModelRowFrom(adapter, spec: str):  # noqa: N802 - reads like the constructor it is
    """A model adapter already built -> its ``ModelRow`` (named by its ``conformance_name``)."""
    from .models import ModelRow

    return ModelRow(getattr(adapter, "conformance_name", spec), adapter, spec)


def row_from(obj, spec: str):
    """What a factory returned -> an attention ``Implementation`` or a ``ModelRow``."""
    from .models import is_model_adapter

    return ModelRowFrom(obj, spec) if is_model_adapter(obj) else as_implementation(obj, spec)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, PropertyFailure):
        return " ".join(text.split())
    first = text.splitlines()[0] if text else ""
    return f"raises {type(exc).__name__}: {first[:300]}"


def reproduction(row, prop: str, case: dict) -> str:
    args = ", ".join(f"{key}={value!r}" for key, value in case.items())
    return f'from transformer.testing import replay; replay("{row.spec}", "{prop}", {args})'


def search(row, prop: str, *, max_examples: int, shrink: bool = True) -> tuple[str | None, dict | None]:
    """Run one property on one row: (None, None) if it holds, else (message, the shrunk case, or
    the first failing one without ``shrink``)."""
    spec = all_properties()[prop]
    reason = spec.applies(row) if hasattr(spec, "applies") else None
    if reason:
        raise NotApplicable(reason)
    seen: dict = {}

    def body(case):
        seen["case"] = case
        spec.check(row, case)

    test = given(case=spec.cases(row))(body)
    for case in reversed(spec.examples):
        test = example(case=case)(test)
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + [Phase.shrink] * shrink
    test = settings(max_examples=max_examples, derandomize=True, database=None, deadline=None, print_blob=False,
                    phases=phases,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    report_multiple_bugs=False)(test)
    try:
        test()
    except NotApplicable:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the implementation raises is its failure
        return _first_line(exc), seen.get("case")
    return None, None


def run_one(row, prop: str, *, max_examples: int, expected: str | None = None, shrink: bool = True) -> Result:
    try:
        message, case = search(row, prop, max_examples=max_examples, shrink=shrink)
    except NotApplicable as exc:
        return Result(row.name, prop, "not-applicable", str(exc))
    repro = reproduction(row, prop, case) if case is not None else ""
    if message is None:
        if expected:
            return Result(row.name, prop, "xpassed", f"expected to fail ({expected}) but passed")
        return Result(row.name, prop, "passed")
    if expected:
        return Result(row.name, prop, "xfailed", f"{message} [expected: {expected}]", repro)
    return Result(row.name, prop, "failed", message, repro)


def read_xfails(path: str | Path, rows, properties) -> dict:
    """``implementation property reason`` per line (``#`` comments, blank lines ignored) -> {(impl, prop): reason}."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--xfails {path}: cannot read it ({exc.strerror})") from None
    names = {row.name for row in rows}
    wanted: dict = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise UsageError(f"--xfails {path}:{number}: expected 'implementation property reason', got {line!r}")
        impl, prop, reason = parts
        if impl not in names:
            raise UsageError(f"--xfails {path}:{number}: unknown implementation {impl!r} (rows: {', '.join(sorted(names))})")
        if prop not in properties:
            raise UsageError(f"--xfails {path}:{number}: unknown property {prop!r}")
        wanted[(impl, prop)] = reason
    return wanted


def select_properties(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ["a", "b"] (each a known property), None for all."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = all_properties()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(f"--properties: unknown {', '.join(unknown) or 'empty list'}; known: {', '.join(known)}")
    return names


def run(rows, *, properties=None, max_examples: int = 20, xfails=None, progress=None, shrink: bool = True) -> list[Result]:
    expected = {**KNOWN_FAILURES, **(xfails or {})}
    results = []
    for row in rows:
        for prop in properties_for(row):
            if properties is not None and prop not in properties:
                continue
            result = run_one(row, prop, max_examples=max_examples, expected=expected.get((row.name, prop)), shrink=shrink)
            results.append(result)
            if progress:
                progress(result)
    return results


def summary(results) -> dict:
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in OUTCOMES}
    return {"total": len(results), **counts, "exit_status": 1 if any(r.outcome in BAD for r in results) else 0}


def report(rows, results) -> dict:
    return {"implementations": [{"name": r.name, "spec": r.spec, "kind": getattr(r, "kind", "attention"),
                                 "description": getattr(r, "description", "")} for r in rows],
            "results": [asdict(r) for r in results], "summary": summary(results)}


def write_json(path, rows, results) -> None:
    Path(path).write_text(json.dumps(report(rows, results), indent=1) + "\n", encoding="utf-8")


SYMBOL = {"passed": "pass", "failed": "FAIL", "xfailed": "xfail", "xpassed": "XPASS", "not-applicable": "n/a"}


def matrix(rows, results) -> str:
    """Properties down, implementations across; one line in words per failure below."""
    cell = {(r.implementation, r.property): SYMBOL[r.outcome] for r in results}
    props = list(dict.fromkeys(r.property for r in results))
    names = [row.name for row in rows]
    widths = [max(len(n), 5) for n in names]
    first = max([len("property")] + [len(p) for p in props])
    lines = ["  ".join(["property".ljust(first)] + [n.ljust(w) for n, w in zip(names, widths)])]
    for p in props:
        lines.append("  ".join([p.ljust(first)] + [cell.get((n, p), "").ljust(w) for n, w in zip(names, widths)]))
    for r in results:
        if r.outcome in ("failed", "xpassed", "xfailed"):
            lines.append(f"{SYMBOL[r.outcome]} {r.implementation} {r.property}: {r.diagnosis}")
            if r.reproduction and r.outcome == "failed":
                lines.append(f"    reproduce: {r.reproduction}")
    s = summary(results)
    lines.append(", ".join(f"{s[o]} {o}" for o in OUTCOMES if s[o]) or "nothing ran")
    return "\n".join(lines)


def replay(spec: str, prop: str, **case) -> None:
    """Run one property on one case again (what a failure's reproduction line calls); raises its failure."""
    row = next((b for b in BUILTIN if b.spec == spec), None) or load_row(spec)
    all_properties()[prop].check(row, case)


__all__ = ["Implementation", "KNOWN_FAILURES", "Result", "run", "run_one", "replay"]
