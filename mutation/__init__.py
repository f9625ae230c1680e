"""The mutation gate: realistic Transformer bugs injected into a copy of `transformer/`, and a runner
that checks the suite catches every one of them.

* `mutation.catalogue` - the bugs: each a source patch (file, exact old text, new text) with its area,
  a description and, where one was found, an issue thread where the same bug happened in real code.
* `mutation.run` - ``python -m mutation.run [--only ID ...] [--list]``: copies the repository's sources
  to a temporary directory per mutant, patches the copy, runs the suite there (fail fast), and writes
  ``reports/mutants.json`` and ``reports/mutants.md``. Exit status 0 when every mutant is killed, 1 when
  one survives, 2 when the runner itself cannot do its job (a patch that no longer applies, a failing
  unmutated suite, the wrong package imported).
* `mutation.pytest_plugin` - loaded into each mutant's pytest process: checks that the copy's
  ``transformer`` is the one imported, puts the likely killers first, records the first failure.
"""
