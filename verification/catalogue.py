"""The claim catalogue: ``claims/*.toml`` loaded, validated and indexed by id.

Each section file holds a ``[section]`` table (letter, title, title_zh) and ``[[claim]]`` tables::

    [[claim]]
    id = "attn.qk-variance"
    section = "A"
    sources = ["000:F4", "004:D6"]          # seed file prefix : question (F0..F21 or D1..D31)
    title_zh = "..."                         # the question, in Chinese, in our own words
    claim = "..."                            # the claim, in English, precise enough to check
    evidence = ["proof", "statistical"]      # evidence kinds expected (see KINDS)
    verdict = "pending"                      # see VERDICTS; some verdicts need one more key:
    # condition = "..."       for holds-under-conditions
    # counterexample = "..."  for false-as-stated
    # citation = "..."        for reference
    # refers_to = ["..."]     optional: related claim ids
    # note = "..."            optional: remarks for the reader

``questions.toml`` (the glosses of the FAQ questions) lives in the same folder and is not a section
file. ``load_catalogue`` reports every problem at once in one
``CatalogueError``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

CLAIMS_DIR = Path(__file__).resolve().parents[1] / "claims"

KINDS = ("proof", "exact", "statistical", "measured", "counterexample", "empirical", "reference")
VERDICTS = ("holds", "holds-under-conditions", "false-as-stated", "reference", "pending")
STATUSES = ("verified", "cited", "failing", "missing")
#: The key each verdict requires besides the common ones.
VERDICT_REQUIRES = {"holds-under-conditions": "condition", "false-as-stated": "counterexample", "reference": "citation"}

NOT_SECTION_FILES = {"questions.toml"}
REQUIRED = ("id", "section", "sources", "title_zh", "claim", "evidence", "verdict")
OPTIONAL = ("condition", "counterexample", "citation", "refers_to", "note")
ID_PATTERN = re.compile(r"^[a-z]+\.[a-z0-9]+(?:-[a-z0-9]+)*$")
# 000 has questions F0 (the Query/Key/Value preface) to F21; 004 has D1 to D31.
SOURCE_PATTERN = re.compile(r"^(?:000:F(?:[0-9]|1[0-9]|2[01])|004:D(?:[1-9]|[12][0-9]|3[01]))$")


class CatalogueError(ValueError):
    """The catalogue is malformed; ``problems`` lists every problem found, one sentence each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid claim catalogue:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    sources: tuple[str, ...]
    title_zh: str
    claim: str
    evidence: tuple[str, ...]
    verdict: str
    condition: str | None = None
    counterexample: str | None = None
    citation: str | None = None
    refers_to: tuple[str, ...] = ()
    note: str | None = None
    file: str = ""

    @property
    def is_reference(self) -> bool:
        """A reference claim is settled by its citation; it needs no test (it may still have some)."""
        return self.verdict == "reference"

    def verdict_detail(self) -> dict[str, str]:
        """The verdict-specific keys that are set (condition / counterexample / citation)."""
        keys = ("condition", "counterexample", "citation")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True)
class Section:
    letter: str
    title: str
    title_zh: str
    file: str


@dataclass
class Catalogue:
    claims: dict[str, Claim]
    sections: dict[str, Section] = field(default_factory=dict)
    questions: dict[str, dict[str, str]] = field(default_factory=dict)
    directory: Path | None = None
    seeds: dict[str, dict[str, str]] = field(default_factory=dict)

    def __contains__(self, claim_id: object) -> bool:
        return claim_id in self.claims

    def __getitem__(self, claim_id: str) -> Claim:
        return self.claims[claim_id]

    def __iter__(self):
        return iter(self.claims.values())

    def __len__(self) -> int:
        return len(self.claims)

    def ids(self) -> list[str]:
        return list(self.claims)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_claim(raw: dict, where: str, letter: str | None, problems: list[str]) -> Claim | None:
    """Validate one [[claim]] table; append problems and return None if it is unusable."""
    cid = raw.get("id")
    label = f"{where}: claim {cid!r}" if isinstance(cid, str) else f"{where}: a claim without an id"
    before = len(problems)
    for key in REQUIRED:
        if key not in raw:
            problems.append(f"{label} lacks the key {key!r}")
    for key in sorted(set(raw) - set(REQUIRED) - set(OPTIONAL)):
        problems.append(f"{label} has an unknown key {key!r} (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    if len(problems) > before:
        return None
    if not isinstance(cid, str) or not ID_PATTERN.match(cid):
        problems.append(f"{label}: the id must look like 'area.some-name' (lowercase, dots and dashes)")
    for key in ("section", "title_zh", "claim", "verdict"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            problems.append(f"{label}: {key!r} must be a non-empty string")
    for key in ("condition", "counterexample", "citation", "note"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            problems.append(f"{label}: {key!r} must be a non-empty string when present")
    if not _str_list(raw["sources"]) or not raw["sources"]:
        problems.append(f"{label}: 'sources' must be a non-empty list of strings like \"000:F4\" or \"004:D6\"")
    else:
        for source in raw["sources"]:
            if not SOURCE_PATTERN.match(source):
                problems.append(f"{label}: unknown source {source!r} (expected 000:F0..000:F21 or 004:D1..004:D31)")
    if not _str_list(raw["evidence"]) or not raw["evidence"]:
        problems.append(f"{label}: 'evidence' must be a non-empty list of kinds ({', '.join(KINDS)})")
    else:
        for kind in raw["evidence"]:
            if kind not in KINDS:
                problems.append(f"{label}: unknown evidence kind {kind!r} (allowed: {', '.join(KINDS)})")
    verdict = raw["verdict"]
    if verdict not in VERDICTS:
        problems.append(f"{label}: unknown verdict {verdict!r} (allowed: {', '.join(VERDICTS)})")
    elif verdict in VERDICT_REQUIRES and VERDICT_REQUIRES[verdict] not in raw:
        problems.append(f"{label}: verdict {verdict!r} requires the key {VERDICT_REQUIRES[verdict]!r}")
    if "refers_to" in raw and not _str_list(raw["refers_to"]):
        problems.append(f"{label}: 'refers_to' must be a list of claim ids")
    if letter is not None and raw["section"] != letter:
        problems.append(f"{label}: section {raw['section']!r} differs from the file's section {letter!r}")
    if len(problems) > before:
        return None
    return Claim(
        id=cid, section=raw["section"], sources=tuple(raw["sources"]), title_zh=raw["title_zh"],
        claim=raw["claim"], evidence=tuple(raw["evidence"]), verdict=verdict,
        condition=raw.get("condition"), counterexample=raw.get("counterexample"), citation=raw.get("citation"),
        refers_to=tuple(raw.get("refers_to", ())), note=raw.get("note"), file=where,
    )


def load_catalogue(directory: str | Path | None = None) -> Catalogue:
    """Load every section file of ``directory`` (default: the repository's ``claims/``)."""
    directory = Path(directory) if directory is not None else CLAIMS_DIR
    problems: list[str] = []
    claims: dict[str, Claim] = {}
    sections: dict[str, Section] = {}
    files = sorted(p for p in directory.glob("*.toml") if p.name not in NOT_SECTION_FILES)
    if not files:
        raise CatalogueError([f"no claim files (*.toml) in {directory}"])
    for path in files:
        where = path.name
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{where}: not valid TOML: {exc}")
            continue
        letter = None
        section = data.get("section")
        if isinstance(section, dict):
            letter = section.get("letter")
            if not all(isinstance(section.get(k), str) for k in ("letter", "title", "title_zh")):
                problems.append(f"{where}: [section] needs string keys letter, title, title_zh")
                letter = None
            elif letter in sections:
                problems.append(f"{where}: section {letter!r} is also defined in {sections[letter].file}")
            else:
                sections[letter] = Section(letter, section["title"], section["title_zh"], where)
        for key in sorted(set(data) - {"section", "claim"}):
            problems.append(f"{where}: unknown top-level key {key!r} (expected [section] and [[claim]])")
        entries = data.get("claim", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            problems.append(f"{where}: 'claim' must be an array of tables ([[claim]])")
            continue
        for raw in entries:
            claim = _check_claim(raw, where, letter, problems)
            if claim is None:
                continue
            if claim.id in claims:
                problems.append(f"{where}: duplicate claim id {claim.id!r} (first defined in {claims[claim.id].file})")
                continue
            claims[claim.id] = claim
    for claim in claims.values():
        for other in claim.refers_to:
            if other not in claims:
                problems.append(f"{claim.file}: claim {claim.id!r} refers_to unknown id {other!r}")
    if problems:
        raise CatalogueError(problems)
    seeds, questions = load_questions(directory)
    return Catalogue(claims, sections, questions, directory, seeds)


def load_questions(directory: str | Path | None = None) -> tuple[dict[str, dict], dict[str, dict[str, str]]]:
    """Seeds and question glosses from ``questions.toml``.

    Returns ``({"000": {"file", "title", "title_zh"}}, {"000:F4": {"en": ..., "zh": ..., "printed": "4"}})``,
    both in file order (``printed``: the question's number as the seed file prints it); empty when the file
    is absent.
    """
    path = Path(directory if directory is not None else CLAIMS_DIR) / "questions.toml"
    if not path.exists():
        return {}, {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    seeds = {s["prefix"]: {k: s.get(k, "") for k in ("file", "title", "title_zh")} for s in data.get("seed", [])}
    questions = {q["id"]: {"en": q.get("en", ""), "zh": q.get("zh", ""), "printed": q.get("printed", "")}
                 for q in data.get("question", [])}
    return seeds, questions
