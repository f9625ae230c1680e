"""``python -m verification.ledger [-n N] [pytest args...]``: run all evidence, write the ledger, summarise.

Runs pytest on the configured testpaths (tests, properties, proofs) with pytest-xdist (``-n``, default 2),
``--claims-strict`` and ``--ledger-dir reports``, so that ``reports/claims.json`` and
``reports/claims.md`` and the page ``reports/site/index.html`` are written; then prints one line: claims by
status, the run's false-alarm rate, counts by verdict, seconds.
Extra arguments go to pytest unchanged (e.g. ``-q``, ``-x``, a path). The exit status is pytest's when
it is an error of pytest itself (interrupted, internal, usage, nothing collected); otherwise 1 when any
evidence failed, any non-reference claim has none, a claim text cannot be filled from its measurements,
the statistical tests' false-alarm rates add up to more than the budget, or the json breaks its schema;
else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m verification.ledger", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("-n", "--numprocesses", dest="workers", default="2",
                        help="pytest-xdist workers (default 2; 0 runs in this process)")
    parser.add_argument("--reports", default="reports", help="folder for claims.json and claims.md (default reports)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None, run=None) -> int:
    """Run the ledger; ``run`` replaces ``pytest.main`` (the spine's tests pass a stub)."""
    import pytest

    run = run or pytest.main
    args, extra = parse(list(sys.argv[1:] if argv is None else argv))
    # pytest runs from the repository root (its testpaths and rootdir); paths given relative to the
    # caller's folder are made absolute first.
    here = Path.cwd()
    extra = [str((here / a).resolve()) if not a.startswith("-") and (here / a).exists() else a for a in extra]
    os.chdir(ROOT)
    reports = Path(args.reports)
    ledger_file = reports / "claims.json"
    started = time.time()
    code = int(run(["-n", str(args.workers), "--claims-strict", "--ledger-dir", str(reports),
                            "--continue-on-collection-errors", "-p", "verification.plugin", *extra]))
    seconds = time.time() - started
    if not ledger_file.exists() or ledger_file.stat().st_mtime < started - 1:
        print(f"claims: no ledger written (pytest exit status {code}) | {seconds:.1f} s", flush=True)
        return code or 1
    from .aggregate import strict_problems, summary_line

    ledger = json.loads(ledger_file.read_text(encoding="utf-8"))
    print(summary_line(ledger, seconds), flush=True)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return code
    problems = strict_problems(ledger)
    if "schema_version" in ledger:  # the spine's tests pass older, partial ledgers
        from .schema import schema_errors

        problems += [f"claims.json breaks its schema at {e}" for e in schema_errors(ledger)]
    for problem in problems:
        print(f"  {problem}", flush=True)
    return 1 if (code or problems) else 0


if __name__ == "__main__":
    sys.exit(main())
