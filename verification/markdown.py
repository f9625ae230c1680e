"""Render the ledger as markdown (claims.md)."""

from __future__ import annotations

from pathlib import Path


def render_markdown(ledger: dict, catalogue, directory: Path) -> str:
    lines = ["# Claims ledger", ""]
    for c in ledger["claims"]:
        lines.append(f"- **{c['id']}** ({c['verdict']}, {c['status']}): {c['claim']}")
    return "\n".join(lines) + "\n"
