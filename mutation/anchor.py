"""Find a patch's old text in a source file by its code, not its layout, comments or docstrings.

A patch names the code it replaces as a snippet of source. The snippet and the file are both read as
a sequence of code tokens (names, numbers, operators, string literals), dropping comments, whitespace
and statement-only strings (docstrings). The snippet must match exactly one run of the file's tokens,
so rewording a comment or a docstring in ``transformer/`` never moves or breaks a mutant, while a
change of the code itself still does (loudly: the runner refuses a patch that matches 0 or 2 times).

Two kinds of snippet:

* a *line* snippet ends with a newline: it stands for whole lines, which are replaced by ``new`` as a
  whole (the matched tokens must be the only code on those lines). Its first line's indentation is
  code too (the block it sits in), so it must match as well;
* a *fragment* has no final newline: the exact span from its first to its last token is replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""
    (?P<string>(?:[rRbBuUfF]{1,2})?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
  | (?P<comment>\#[^\n]*)
  | (?P<space>\\\n|\s+)
  | (?P<code>\w+|\*\*=?|//=?|->|:=|<<=?|>>=?|\.\.\.|[-+*/%@&|^<>!=]=|\S)
""", re.VERBOSE)


class AnchorError(ValueError):
    """A snippet that matches no run, or several runs, of the file's code tokens."""


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # offset of the first character in the source
    end: int    # offset just past the last character


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _line_end(text: str, offset: int) -> int:
    """Offset just past the newline that ends the line holding ``offset`` (or the end of the text)."""
    newline = text.find("\n", offset)
    return len(text) if newline < 0 else newline + 1


def _column(text: str, offset: int) -> int:
    return offset - _line_start(text, offset)


def _is_statement_string(text: str, match: re.Match) -> bool:
    """A string literal alone on its lines (a docstring, or a string used as a comment)."""
    before = text[_line_start(text, match.start()):match.start()]
    after = text[match.end():_line_end(text, match.end())]
    return before.strip() == "" and (after.strip() == "" or after.lstrip().startswith("#"))


def code_tokens(text: str) -> list[Token]:
    """The code tokens of ``text``: comments, whitespace and statement-only strings dropped."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind in ("comment", "space") or (kind == "string" and _is_statement_string(text, match)):
            continue
        tokens.append(Token(match.group(), match.start(), match.end()))
    return tokens


def find(text: str, snippet: str) -> list[tuple[int, int]]:
    """Every (start, end) character span of ``text`` that replacing ``snippet`` would replace."""
    snippet_tokens = code_tokens(snippet)
    if not snippet_tokens:
        raise AnchorError("the snippet holds no code")
    wanted = [t.text for t in snippet_tokens]
    whole_lines = snippet.endswith("\n")
    indent = _column(snippet, snippet_tokens[0].start)
    tokens = code_tokens(text)
    texts = [t.text for t in tokens]
    spans = []
    for i in range(len(texts) - len(wanted) + 1):
        if texts[i:i + len(wanted)] == wanted and (not whole_lines or _column(text, tokens[i].start) == indent):
            first, last = tokens[i], tokens[i + len(wanted) - 1]
            spans.append(_span(text, first, last, whole_lines=whole_lines, tokens=tokens,
                               bounds=(i, i + len(wanted))))
    return spans


def _span(text: str, first: Token, last: Token, *, whole_lines: bool, tokens: list[Token],
          bounds: tuple[int, int]) -> tuple[int, int]:
    if not whole_lines:
        return first.start, last.end
    start, end = _line_start(text, first.start), _line_end(text, last.end)
    i, j = bounds
    others = [t for t in tokens[:i] + tokens[j:] if start <= t.start < end]
    if others:
        raise AnchorError(f"the snippet's lines share code with the rest of the file ({others[0].text!r})")
    return start, end


def count(text: str, snippet: str) -> int:
    """How many runs of ``text``'s code tokens the snippet matches."""
    return len(find(text, snippet))


def replace(text: str, old: str, new: str) -> str:
    """``text`` with the one run of code that ``old`` matches replaced by ``new``."""
    spans = find(text, old)
    if len(spans) != 1:
        raise AnchorError(f"the code of the snippet occurs {len(spans)} times (expected exactly once)")
    start, end = spans[0]
    return text[:start] + new + text[end:]
