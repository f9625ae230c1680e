"""The kill index is generated from the gate's results: a matrix lists every killer, killers.json the first."""

from __future__ import annotations

import json

from mutation.catalogue import Mutant, Patch
from mutation.index import main

FAKE = (
    Mutant("scale-gone", "scaling", "no 1/sqrt(d_k)", (Patch("transformer/attention.py", "a", "b"),)),
    Mutant("mask-flipped", "masks", "mask polarity | flipped", (Patch("transformer/masks.py", "c", "d"),)),
    Mutant("survivor", "norm", "an unseen bug", (Patch("transformer/layers.py", "e", "f"),)),
)


def write(tmp_path, name, data):
    (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    return tmp_path / name


def test_index_from_a_matrix_groups_tests_by_module_and_lists_each_mutants_killers(tmp_path):
    matrix = write(tmp_path, "matrix.json", {
        "scale-gone": ["tests/test_a.py::test_x[float32]", "tests/test_a.py::test_x[float64]", "props/test_b.py::test_y"],
        "mask-flipped": ["props/test_b.py::test_y", "props/test_b.py::test_z"],
        "survivor": [],
        "retired": ["tests/test_a.py::test_x"],
    })
    out = tmp_path / "INDEX.md"
    assert main(["--source", str(matrix), "--out", str(out)], repo=tmp_path, catalogue=FAKE) == 0
    text = out.read_text()
    assert "Every test that fails on each mutant" in text
    assert "### `props/test_b.py`\n\n- `test_y`: `mask-flipped`, `scale-gone`\n- `test_z`: `mask-flipped`\n" in text
    assert "- `test_x`: `retired`, `scale-gone`" in text  # parameters folded into one test function
    killers = "`props/test_b.py::test_y`<br>`tests/test_a.py::test_x`"
    assert f"| `scale-gone` | scaling and softmax | no 1/sqrt(d_k) | {killers} |" in text
    assert "| `mask-flipped` | masks | mask polarity \\| flipped |" in text
    assert "| `survivor` | norm, residual, dropout | an unseen bug | **no test recorded** |" in text
    assert "Not in the catalogue any more: `retired`." in text


def test_index_from_killers_says_it_lists_the_first_killer_only(tmp_path):
    killers = write(tmp_path, "killers.json", {"scale-gone": "tests/test_a.py::test_x", "mask-flipped": "timeout after 60 s"})
    out = tmp_path / "INDEX.md"
    assert main(["--source", str(killers), "--out", str(out)], repo=tmp_path, catalogue=FAKE) == 0
    text = out.read_text()
    assert "One test per mutant" in text and "- `test_x`: `scale-gone`" in text
    assert "| `mask-flipped` | masks | mask polarity \\| flipped | **no test recorded** |" in text


def test_default_source_is_the_matrix_when_there_is_one(tmp_path):
    (tmp_path / "mutation").mkdir()
    (tmp_path / "reports").mkdir()
    write(tmp_path / "mutation", "killers.json", {"scale-gone": "tests/test_a.py::test_first"})
    assert main([], repo=tmp_path, catalogue=FAKE) == 0
    assert "`test_first`" in (tmp_path / "mutation/INDEX.md").read_text()
    write(tmp_path / "reports", "mutants-matrix.json", {"scale-gone": ["tests/test_a.py::test_all"]})
    assert main([], repo=tmp_path, catalogue=FAKE) == 0
    assert "`test_all`" in (tmp_path / "mutation/INDEX.md").read_text()


def test_a_malformed_source_is_an_error(tmp_path, capsys):
    bad = write(tmp_path, "bad.json", ["not", "a", "mapping"])
    assert main(["--source", str(bad), "--out", str(tmp_path / "x.md")], repo=tmp_path, catalogue=FAKE) == 2
    assert "expected a JSON object" in capsys.readouterr().err
