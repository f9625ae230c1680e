"""Run the suite against every mutant of the catalogue: ``python -m mutation.run [--only ID ...] [--list]``.

For each mutant: copy the repository's sources to a temporary directory, apply the mutant's patches
to the copy, run pytest there with the copy first on ``PYTHONPATH`` (a plugin checks that the copy's
``transformer`` is the one imported), stop at the first failure (``-x``), and record killed/survived
and the first failing test. The unmutated copy runs first, on all workers: if it fails, nothing a
mutant run says would mean anything, and the runner stops with an error. Mutants then run in
parallel, one single-process pytest per worker (``--jobs``, default 2): across mutants the cores stay
busy, while inside one fail-fast run a second worker would only add start-up cost.

Reproducibility: the ``ci`` hypothesis profile (derandomised), no cache provider, no coverage, a
fresh copy (so no hypothesis database) per mutant.

Output: ``reports/mutants.json`` and ``reports/mutants.md`` (the full catalogue only; ``--only`` prints).
Exit status: 0 every mutant killed, 1 some survived, 2 the runner could not do its job (a patch that
no longer applies, a mutant that does not compile, a failing unmutated suite, the wrong package
imported, a pytest usage error).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import anchor
from .catalogue import AREA_HINTS, AREAS, CATALOGUE, Mutant
from .pytest_plugin import GUARD_EXIT

REPO = Path(__file__).resolve().parents[1]
# What a test run needs; anything else tracked by git is copied too (see `source_files`).
SOURCES = ("transformer", "properties", "tests", "proofs", "verification", "claims", "mutation",
           "conftest.py", "pyproject.toml")
NOT_COPIED = ("reports", ".venv", ".git", "mutants", ".mutation", ".hypothesis", ".pytest_cache")
PYTEST_ARGS = ("-q", "--tb=no", "-p", "no:cacheprovider", "-p", "no:cov", "-p", "mutation.pytest_plugin")


class RunnerError(Exception):
    """The runner cannot give a meaningful verdict (exit status 2)."""


@dataclass
class Result:
    id: str
    area: str
    description: str
    citation: str | None
    killed: bool
    killed_by: str | None
    message: str | None
    seconds: float
    killers: list[str] | None = None  # with --matrix: every failing test


# ---------------------------------------------------------------------------------------------- patches

def apply_patches(root: Path, mutant: Mutant) -> None:
    """Apply the mutant's patches to the copy at ``root``; each old snippet's code must occur exactly once."""
    for patch in mutant.patches:
        path = root / patch.file
        if not path.is_file():
            raise RunnerError(f"mutant {mutant.id}: {patch.file} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            patched = anchor.replace(text, patch.old, patch.new)
        except anchor.AnchorError as err:
            raise RunnerError(f"mutant {mutant.id}: in {patch.file}, {err}; the code changed and the catalogue "
                              f"must follow it:\n{patch.old}") from None
        path.write_text(patched, encoding="utf-8")
        for stale in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            stale.unlink()


def _occurrences(text: str, snippet: str) -> int | str:
    """How many times the snippet's code occurs in ``text``, or why it cannot be located."""
    try:
        return anchor.count(text, snippet)
    except anchor.AnchorError as err:
        return str(err)


def check_catalogue(root: Path, mutants) -> list[str]:
    """Every problem that would stop a mutant from applying cleanly to the sources under ``root``."""
    problems, seen = [], set()
    for m in mutants:
        if m.id in seen:
            problems.append(f"duplicate mutant id {m.id}")
        seen.add(m.id)
        if m.area not in AREAS:
            problems.append(f"mutant {m.id}: unknown area {m.area!r}")
        if not m.patches:
            problems.append(f"mutant {m.id}: no patch")
        texts: dict[str, str] = {}
        before = len(problems)
        for patch in m.patches:
            path = root / patch.file
            if not path.is_file():
                problems.append(f"mutant {m.id}: {patch.file} does not exist")
                continue
            pristine = path.read_text(encoding="utf-8")
            current = texts.setdefault(patch.file, pristine)
            if patch.old == patch.new:
                problems.append(f"mutant {m.id}: a patch to {patch.file} changes nothing")
            found = [_occurrences(pristine, patch.old), _occurrences(current, patch.old)]
            if found != [1, 1]:
                bad = next(f for f in found if f != 1)
                where = bad if isinstance(bad, str) else f"occurs {bad} times"
                problems.append(f"mutant {m.id}: the code its patch replaces {where} in {patch.file} "
                                f"(expected exactly once):\n{patch.old}")
                continue
            texts[patch.file] = anchor.replace(current, patch.old, patch.new)
        if len(problems) > before:
            continue
        for file, text in texts.items():
            if text == (root / file).read_text(encoding="utf-8"):
                problems.append(f"mutant {m.id}: leaves {file} unchanged")
            try:
                compile(text, f"{file} ({m.id})", "exec")
            except SyntaxError as err:
                problems.append(f"mutant {m.id}: {file} does not compile once patched: {err}")
    return problems


# ---------------------------------------------------------------------------------------------- copies

def source_files(repo: Path) -> list[Path]:
    """Files to copy: git's tracked and untracked-but-not-ignored files, else the SOURCES trees."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, check=True,
                             capture_output=True).stdout.decode()
        names = [Path(n) for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
        for src in SOURCES:
            p = repo / src
            names += [f.relative_to(repo) for f in p.rglob("*") if f.is_file()] if p.is_dir() else [Path(src)] * p.is_file()
    keep = [n for n in names if n.parts and n.parts[0] not in NOT_COPIED and "__pycache__" not in n.parts
            and (repo / n).is_file()]
    missing = [s for s in ("transformer", "conftest.py", "pyproject.toml", "mutation") if not (repo / s).exists()]
    if missing:
        raise RunnerError(f"{repo} lacks {', '.join(missing)}")
    return keep


def copy_sources(repo: Path, dest: Path) -> None:
    for name in source_files(repo):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)


def clone_copy(base: Path, dest: Path) -> None:
    """Copy a prepared copy (with its bytecode caches, so unchanged modules need no recompiling)."""
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns(".hypothesis", ".pytest_cache", "reports", "*.json.tmp"))


# ---------------------------------------------------------------------------------------------- pytest

def run_pytest(copy: Path, extra: list[str], *, timeout: float, env_extra: dict[str, str]) -> tuple[int | None, dict, str]:
    """Run pytest in ``copy``; returns (exit status or None on timeout, the plugin's result, output tail)."""
    result_file = copy / ".mutation-result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "PYTEST_XDIST_", "MUTATION_"))}
    # The copy comes first on the path: its `transformer` must shadow the editable install's.
    path = os.pathsep.join([str(copy)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    env.update({"PYTHONPATH": path, "HYPOTHESIS_PROFILE": "ci", "MUTATION_ROOT": str(copy),
                "MUTATION_RESULT": str(result_file), "PYTHONHASHSEED": "0", **env_extra})
    cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *extra]
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = None
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return status, result, out.decode(errors="replace")[-4000:]


def _check_guard(status, result, output, what: str) -> None:
    if status == GUARD_EXIT or "guard" in result:
        raise RunnerError(f"{what}: {result.get('guard') or output}")
    if result.get("outside_copy"):
        raise RunnerError(f"{what}: modules imported from outside the copy: {result['outside_copy']}")


def run_pristine(copy: Path, *, jobs: int, timeout: float) -> tuple[dict[str, float], float]:
    """Run the unmutated suite in ``copy``; it must pass. Returns per-test durations and wall time."""
    extra = ["-n", str(jobs)] if jobs > 1 and _has_xdist() else ["-p", "no:xdist"]
    start = time.perf_counter()
    status, result, output = run_pytest(copy, extra, timeout=timeout,
                                        env_extra={"MUTATION_RECORD_DURATIONS": "1"})
    seconds = time.perf_counter() - start
    _check_guard(status, result, output, "unmutated suite")
    if status != 0:
        first = result.get("first_failure") or {}
        raise RunnerError(f"the unmutated suite does not pass (pytest exit status {status}, first failure "
                          f"{first.get('nodeid')}: {first.get('message')}); fix the suite before gating mutants."
                          f"\n{output}")
    return result.get("durations", {}), seconds


def _has_xdist() -> bool:
    import importlib.util
    return importlib.util.find_spec("xdist") is not None


def priority_patterns(mutant: Mutant, previous: dict[str, str]) -> list[str]:
    """Node-id patterns to run first: last run's killer of this mutant, then its own and its area's hints."""
    first = [previous[mutant.id]] if previous.get(mutant.id) else []
    return list(dict.fromkeys(first + list(mutant.hints) + list(AREA_HINTS.get(mutant.area, ()))))


def run_mutant(mutant: Mutant, base: Path, work: Path, *, durations_file: Path, previous: dict[str, str],
               timeout: float, keep: bool, matrix: bool = False) -> Result:
    start = time.perf_counter()
    copy = work / mutant.id
    clone_copy(base, copy)
    try:
        apply_patches(copy, mutant)
        env_extra = {"MUTATION_PRIORITY": json.dumps(priority_patterns(mutant, previous)),
                     "MUTATION_DURATIONS": str(durations_file)}
        status, result, phase_one = 0, {}, False
        if previous.get(mutant.id) and not matrix:
            phase_one = True
            # Last time's killer alone first: collecting one module instead of the whole suite saves
            # most of a run's start-up. Any other outcome (passes, or the test is gone) -> whole suite.
            status, result, output = run_pytest(copy, ["-x", "-p", "no:xdist", previous[mutant.id]],
                                                timeout=timeout, env_extra=env_extra)
            _check_guard(status, result, output, f"mutant {mutant.id}")
            (copy / ".mutation-result.json").unlink(missing_ok=True)
        killed_alone = status is None or (status == 1 and result.get("first_failure"))
        if not (phase_one and killed_alone):
            args = ["-p", "no:xdist"] if matrix else ["-x", "-p", "no:xdist"]
            status, result, output = run_pytest(copy, args, timeout=timeout, env_extra=env_extra)
            _check_guard(status, result, output, f"mutant {mutant.id}")
        first = result.get("first_failure")
        if status is None:
            killed, killed_by, message = True, f"timeout after {timeout:.0f} s", first and first.get("message")
        elif status == 0:
            killed, killed_by, message = False, None, None
        elif status in (1, 2) and first:
            killed, killed_by, message = True, first["nodeid"], first.get("message")
        else:
            raise RunnerError(f"mutant {mutant.id}: pytest exit status {status} without a failing test:\n{output}")
    finally:
        if not keep:
            shutil.rmtree(copy, ignore_errors=True)
    return Result(mutant.id, mutant.area, mutant.description, mutant.citation, killed, killed_by, message,
                  round(time.perf_counter() - start, 2), result.get("failed") if matrix else None)


# ---------------------------------------------------------------------------------------------- reports

def write_reports(results: list[Result], summary: dict, reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    payload = {"mutants": [asdict(r) for r in results], "summary": summary}
    (reports / "mutants.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        "# Mutation gate",
        "",
        f"{summary['killed']} of {summary['total']} mutants killed in {summary['seconds']:.0f} s "
        f"({summary['jobs']} jobs; the unmutated suite took {summary['pristine_seconds']:.0f} s).",
        "",
        "| mutant | area | bug | killed by | s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        verdict = f"`{r.killed_by}`" if r.killed else "**SURVIVED**"
        bug = r.description.replace("|", "\\|") + (f" ([thread]({r.citation}))" if r.citation else "")
        lines.append(f"| `{r.id}` | {AREAS[r.area]} | {bug} | {verdict} | {r.seconds:.1f} |")
    (reports / "mutants.md").write_text("\n".join(lines) + "\n")


KILLERS = "mutation/killers.json"


def write_matrix(results: list[Result], reports: Path) -> None:
    """Which tests kill which mutant (all of them, from runs without -x): redundancy at a glance."""
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "mutants-matrix.json").write_text(json.dumps({r.id: r.killers or [] for r in results}, indent=1) + "\n")
    lines = ["# Which tests kill which mutant", "", "| mutant | killing tests | tests |", "|---|---|---|"]
    for r in sorted(results, key=lambda r: len(r.killers or [])):
        names = sorted({k.split("[")[0] for k in r.killers or []})
        lines.append(f"| `{r.id}` | {len(r.killers or [])} | " + "<br>".join(f"`{n}`" for n in names) + " |")
    (reports / "mutants-matrix.md").write_text("\n".join(lines) + "\n")


def _previous_killers(repo: Path) -> dict[str, str]:
    """The test that killed each mutant last time (it runs first now): the committed ``killers.json``,
    updated by the last report here. Only the order of the tests depends on it, never a verdict."""
    killers = {}
    for source in (repo / KILLERS, repo / "reports" / "mutants.json"):
        try:
            data = json.loads(source.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "mutants" in data:
            data = {m["id"]: m["killed_by"] for m in data["mutants"] if m.get("killed")}
        killers.update({k: v for k, v in data.items() if isinstance(v, str) and "::" in v})
    return killers


# ---------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None, *, repo: Path = REPO, catalogue=CATALOGUE) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only (no report files)")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")),
                        help="mutants run in parallel (default 2)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant before it counts as killed by a timeout (default: 3x the unmutated suite + 60)")
    parser.add_argument("--keep", action="store_true", help="keep the mutated copies (printed path)")
    parser.add_argument("--matrix", action="store_true",
                        help="no fail-fast: record every test that kills each mutant (slow; writes reports/mutants-matrix.*)")
    parser.add_argument("--save-killers", action="store_true",
                        help=f"after a full run, store each mutant's killer in {KILLERS} (tests to run first next time)")
    args = parser.parse_args(argv)

    known = {m.id: m for m in catalogue}
    if args.list:
        for m in catalogue:
            print(f"{m.id:36} {m.area:11} {m.description}")
        print(f"{len(catalogue)} mutants; " + ", ".join(f"{a}: {sum(m.area == a for m in catalogue)}" for a in AREAS))
        return 0
    unknown = [i for i in args.only or () if i not in known]
    if unknown:
        print(f"error: unknown mutant id(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    selected = [known[i] for i in args.only] if args.only else list(catalogue)

    start = time.perf_counter()
    try:
        problems = check_catalogue(repo, selected)
        if problems:
            raise RunnerError("the catalogue does not apply to the current sources:\n- " + "\n- ".join(problems))
        work = Path(tempfile.mkdtemp(prefix="mutants-"))
        try:
            results, pristine_seconds = _run_all(selected, repo, work, args)
        finally:
            if args.keep:
                print(f"copies kept under {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    except RunnerError as err:
        print(f"mutation runner error: {err}", file=sys.stderr)
        return 2

    seconds = round(time.perf_counter() - start, 1)
    killed = sum(r.killed for r in results)
    summary = {"total": len(results), "killed": killed, "survived": len(results) - killed, "seconds": seconds,
               "pristine_seconds": round(pristine_seconds, 1), "jobs": args.jobs,
               "by_area": {a: sum(r.area == a for r in results) for a in AREAS}}
    if args.matrix:
        write_matrix(results, repo / "reports")
    if not args.only:
        write_reports(results, summary, repo / "reports")
        if args.save_killers:
            (repo / KILLERS).write_text(json.dumps({r.id: r.killed_by for r in results if r.killed}, indent=1) + "\n")
    survivors = [r.id for r in results if not r.killed]
    print(f"\n{killed} of {len(results)} mutants killed in {seconds:.0f} s"
          + (f"; SURVIVED: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


def _run_all(selected, repo: Path, work: Path, args) -> tuple[list[Result], float]:
    base = work / "pristine"
    copy_sources(repo, base)
    print(f"unmutated suite in {base} ...", flush=True)
    durations, pristine_seconds = run_pristine(base, jobs=args.jobs, timeout=args.timeout or 1800)
    print(f"unmutated suite passed in {pristine_seconds:.0f} s ({len(durations)} tests)", flush=True)
    (base / ".mutation-result.json").unlink(missing_ok=True)
    durations_file = work / "durations.json"
    durations_file.write_text(json.dumps(durations))
    # A single-process fail-fast run is at most about the suite's single-core time, ~jobs x the wall time.
    timeout = args.timeout or 3 * max(args.jobs, 1) * pristine_seconds + 60
    previous = _previous_killers(repo)

    results: dict[str, Result] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = {pool.submit(run_mutant, m, base, work, durations_file=durations_file, previous=previous,
                               timeout=timeout, keep=args.keep, matrix=args.matrix): m for m in selected}
        for future in concurrent.futures.as_completed(futures):
            try:
                r = future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            results[r.id] = r
            verdict = f"killed by {r.killed_by}" if r.killed else "SURVIVED"
            print(f"[{len(results):2}/{len(selected)}] {r.id:36} {verdict} ({r.seconds:.1f} s)", flush=True)
    return [results[m.id] for m in selected], pristine_seconds


if __name__ == "__main__":
    sys.exit(main())
