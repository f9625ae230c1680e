"""``faq-conformance MODULE:FACTORY [...]``: run the conformance properties against your factories.

Exit status: 0 every property passed (or failed as expected), 1 some property failed (or an
expected failure passed), 2 a usage error (a factory that does not load, a bad option, a bad
expected-failures file), said in a few lines.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .implementations import UsageError
from .runner import (
    all_properties,
    load_row,
    matrix,
    read_xfails,
    run,
    select_properties,
    summary,
    write_json,
)

EPILOG = """\
FACTORY() returns attend(q, k, v, allowed) -> out or (out, weights), with q (B, H, S_q, d), k and v
(B, H, S_k, d), allowed None or bool (True = may attend) broadcasting to (B, H, S_q, S_k); or a model
adapter (see transformer.testing.models). Properties: {properties}.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors exit 2 too, in two lines
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faq-conformance", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Run the executable Transformer FAQ's conformance properties against attention "
                            "implementations or model adapters.",
                epilog=EPILOG.format(properties=", ".join(all_properties())))
    p.add_argument("factories", nargs="+", metavar="MODULE:FACTORY")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument("--xfails", metavar="FILE",
                   help="expected failures, one 'implementation property reason' per line (strict)")
    p.add_argument("--properties", metavar="A,B", help="run only these properties (comma-separated)")
    p.add_argument("--max-examples", type=int, default=20, metavar="N", help="hypothesis examples per property (20)")
    return p


def main(argv=None) -> int:
    out = sys.stdout
    try:
        args = parser().parse_args(argv)
        if args.max_examples < 1:
            raise UsageError("--max-examples must be at least 1")
        properties = select_properties(args.properties)
        if "." not in sys.path and "" not in sys.path:
            sys.path.insert(0, "")  # like python -m: modules in the current folder load
        rows = [load_row(spec) for spec in args.factories]
        names = [row.name for row in rows]
        if len(set(names)) != len(names):
            raise UsageError(f"two factories give the same row name: {', '.join(names)}")
        xfails = read_xfails(args.xfails, rows, all_properties()) if args.xfails else None
    except UsageError as exc:
        print(f"faq-conformance: error: {exc}", file=sys.stderr)
        print("usage: faq-conformance MODULE:FACTORY [MODULE:FACTORY ...] [--json FILE] [--xfails FILE] "
              "[--properties a,b] [--max-examples N]", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # the cases are tiny tensors: threads only add synchronisation
    results = run(rows, properties=properties, max_examples=args.max_examples, xfails=xfails)
    print(matrix(rows, results), file=out)
    if args.json:
        write_json(args.json, rows, results)
        print(f"results written to {args.json}", file=out)
    return summary(results)["exit_status"]


if __name__ == "__main__":
    raise SystemExit(main())
