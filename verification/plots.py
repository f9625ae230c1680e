"""Plots for the page, each drawn from this run's measurement records (never from constants).

Every plot belongs to one claim and reads only that claim's records (or the run's conformance rows); a
plot whose records did not come (a partial run, a renamed measurement) is left out, never faked. The
Agg backend writes small SVG files beside ``index.html``; closed forms are drawn as lines only where a
record carries them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

#: Width and height of one plot in inches (and the <img> box at 96 px per inch).
SIZE = (6.4, 3.6)


def _records(claim: dict, name: str) -> list[dict]:
    return [r for r in claim["measurements"] if r["name"] == name]


def _one(claim: dict, name: str) -> dict | None:
    found = _records(claim, name)
    return found[0] if found else None


def _error_bars(records) -> list[list[float]]:
    """Distances from each value down and up to its interval's bounds (0 where a bound is on the other side)."""
    low = [max(0.0, r["value"] - r["interval"][0]) if r.get("interval") else 0.0 for r in records]
    high = [max(0.0, r["interval"][1] - r["value"]) if r.get("interval") else 0.0 for r in records]
    return [low, high]


def _interval_bars(ax, xs, records, **kwargs):
    ax.errorbar(xs, [r["value"] for r in records], yerr=_error_bars(records), fmt="o", capsize=3, **kwargs)


# -- one function per plot: (claim record lookup) -> figure or None --------------------------------------------
def qk_variance(claim, plt):
    rows = sorted(_records(claim, "dot_variance"), key=lambda r: r["params"].get("d_k", 0))
    if len(rows) < 2:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    xs = [r["params"]["d_k"] for r in rows]
    _interval_bars(ax, xs, rows, label="Var[q·k] measured (interval)")
    closed = [r["details"].get("closed_form") for r in rows]
    if all(c is not None for c in closed):
        ax.plot(xs, closed, "--", label="closed form d_k")
    scaled = sorted(_records(claim, "scaled_variance"), key=lambda r: r["params"].get("d_k", 0))
    if scaled:
        _interval_bars(ax, [r["params"]["d_k"] for r in scaled], scaled, label="Var[q·k/√d_k] measured", color="C2")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("d_k (dimensions per head)")
    ax.set_ylabel("variance of the score (score units²)")
    ax.legend()
    return fig, "Variance of raw and scaled scores against d_k: the raw variance grows as d_k, the scaled one stays at 1."


def diagonal_argmax(claim, plt):
    rows = sorted(_records(claim, "p_diagonal_argmax"), key=lambda r: r["params"].get("d", 0))
    if len(rows) < 2:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    _interval_bars(ax, [r["params"]["d"] for r in rows], rows, label="P(diagonal is the row maximum)")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("width d of the raw vectors")
    ax.set_ylabel("probability (fraction of rows)")
    ax.legend(loc="lower right")
    return fig, ("Without projections, how often a token's own score is the largest in its row, against width "
                 "(intervals at the test's confidence).")


def core_flops(claim, plt):
    r = _one(claim, "core_flops")
    if not r or not isinstance(r["value"], dict):
        return None
    series: dict[int, list[tuple[int, float]]] = {}
    for key, flops in r["value"].items():
        parts = dict(p.split("=") for p in key.split(","))
        series.setdefault(int(parts["d"]), []).append((int(parts["n"]), flops))
    fig, ax = plt.subplots(figsize=SIZE)
    for d, points in sorted(series.items()):
        points.sort()
        ax.plot([n for n, _ in points], [f for _, f in points], "o-", label=f"measured, d_model = {d}")
        ax.plot([n for n, _ in points], [4 * d * n * n for n, _ in points], ":", color="gray")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("sequence length n (tokens)")
    ax.set_ylabel("FLOPs of QKᵀ and AV")
    ax.legend(title="dotted: 4 d n²")
    return fig, "Counted FLOPs of the attention core against n: quadratic in n (slope 2 on log axes)."


def block_cost(claim, plt):
    r = _one(claim, "flops")
    if not r or not isinstance(r["value"], list) or not all(isinstance(x, dict) for x in r["value"]):
        return None
    rows = r["value"]
    fig, ax = plt.subplots(figsize=SIZE)
    for i, d in enumerate(sorted({x["d"] for x in rows})):
        mine = sorted((x for x in rows if x["d"] == d), key=lambda x: x["n"])
        ns = [x["n"] for x in mine]
        colour = f"C{i % 10}"
        ax.plot(ns, [x["attention"] for x in mine], "o-", color=colour, label=f"self-attention, d = {d}")
        ax.plot(ns, [x["ffn"] for x in mine], "s--", color=colour, label=f"feed-forward, d = {d}")
        ax.axvline(2 * d, color=colour, linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("sequence length n (tokens); dotted lines at n = 2d")
    ax.set_ylabel("FLOPs per layer")
    ax.legend(fontsize=7)
    return fig, "FLOPs of one layer by component against n: attention overtakes the feed-forward network where n = 2d."


def _heatmap(values, plt, label: str, title: str, marks=()):
    fig, ax = plt.subplots(figsize=SIZE)
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.grid(False)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(len(values[0])))
    ax.set_yticks(range(len(values)))
    for layer, head in marks:
        ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _matrix(value) -> bool:
    return isinstance(value, list) and value and all(isinstance(row, list) and row for row in value)


def positional_heads(claim, plt):
    r = _one(claim, "mass_on_previous_token")
    if not r or not _matrix(r["value"]):
        return None
    marks = _one(claim, "positional_heads")
    marks = [tuple(m) for m in marks["value"]] if marks and isinstance(marks["value"], list) else []
    fig = _heatmap(r["value"], plt, "mean attention mass on the previous token",
                   "pretrained MiniLM, layer × head (red: positional)", marks)
    return fig, "Mass each pretrained head puts on the previous token; heads marked red are the ones the test finds positional."


def head_entropy(claim, plt):
    r = _one(claim, "trained_entropy_per_head")
    if not r or not _matrix(r["value"]):
        return None
    fig = _heatmap(r["value"], plt, "normalised row entropy (1 = uniform)", "pretrained MiniLM, layer × head")
    return fig, "Sparsity of the pretrained model's heads: low entropy means a row's weight sits on few keys."


def pruning_curve(claim, plt):
    least = _one(claim, "ranking_agreement_least_important_first")
    if not least or not isinstance(least["value"], dict):
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    ks = sorted(least["value"], key=float)
    ax.plot([float(k) for k in ks], [least["value"][k] for k in ks], "o-", label="least important heads removed first")
    most = _one(claim, "ranking_agreement_most_important_first")
    if most and isinstance(most["value"], dict):
        km = sorted(most["value"], key=float)
        ax.plot([float(k) for k in km], [most["value"][k] for k in km], "s--", label="most important heads removed first")
    ax.set_xlabel("heads removed (of the model's heads)")
    ax.set_ylabel("Spearman agreement with the full model")
    ax.legend()
    return fig, "Head pruning: agreement of sentence-similarity rankings with the unpruned model as heads are removed."


def additive_vs_dot(claim, plt):
    rows = [r for r in _records(claim, "accuracy_difference") if isinstance(r["details"].get("median_accuracy"), dict)]
    if not rows:
        return None
    by_dk: dict[int, dict] = {}
    for r in rows:
        by_dk[r["params"]["d_k"]] = r["details"]["median_accuracy"]
    fig, ax = plt.subplots(figsize=SIZE)
    dks = sorted(by_dk)
    for mechanism in sorted({m for acc in by_dk.values() for m in acc}):
        ax.plot(dks, [by_dk[d].get(mechanism, math.nan) for d in dks], "o-", label=mechanism)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_k (dimensions per head)")
    ax.set_ylabel("median held-out accuracy (fraction)")
    ax.legend()
    return fig, ("Toy retrieval task: median accuracy over replicas of additive, scaled and unscaled dot-product "
                 "attention against d_k.")


def similarity_decay(claim, plt):
    curves = sorted(_records(claim, "similarity_by_offset"), key=lambda r: r["params"].get("base", 0))
    if curves:
        fig, ax = plt.subplots(figsize=SIZE)
        for r in curves:
            ax.plot(r["value"]["offset"], r["value"]["dot"], label=f"base {r['params']['base']:g}")
        ax.set_xlabel("offset k (positions)")
        ax.set_ylabel("⟨PE(0), PE(k)⟩ (dot product)")
        ax.legend()
        return fig, "Dot product of sinusoidal codes against the offset for several bases (d_model in the records)."
    r = _one(claim, "window_means")
    if not r or not isinstance(r["value"], dict):
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    ax.bar(list(r["value"]), list(r["value"].values()))
    ax.set_xlabel("window of offsets k (positions)")
    ax.set_ylabel("mean ⟨PE(0), PE(k)⟩ (dot product)")
    return fig, "Mean code similarity over growing windows of offsets: it falls on average."


def base_horizon(claim, plt):
    r = _one(claim, "by_base")
    if not r or not isinstance(r["value"], dict):
        return None
    bases = sorted(r["value"], key=float)
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot([float(b) for b in bases], [r["value"][b].get("horizon", math.nan) for b in bases], "o-",
            label="offset where similarity falls to 10%")
    ax.plot([float(b) for b in bases], [r["value"][b].get("longest_wavelength", math.nan) for b in bases], "s--",
            label="longest wavelength")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("base of the sinusoids")
    ax.set_ylabel("positions")
    ax.legend()
    return fig, "What the base sets: the similarity horizon and the longest wavelength grow with it."


def _by_width(claim, name: str, plt, ylabel: str, xlabel: str, caption: str):
    r = _one(claim, name)
    if not r or not isinstance(r["value"], dict) or not r["value"]:
        return None
    ws = sorted(r["value"], key=float)
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot([float(w) for w in ws], [r["value"][w] for w in ws], "o-")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, caption


def nearest_row(claim, plt):
    return _by_width(claim, "fraction_of_rows_not_winning_their_own_logit_at_init", plt,
                     "fraction of rows (tied table)", "width d_model",
                     "With a tied output layer at initialisation, how often a token's own row does not win its "
                     "logit, against width.")


def token_identity(claim, plt):
    return _by_width(claim, "recovered_fraction_by_width", plt, "fraction of tokens recovered", "width d_model",
                     "Nearest-row recovery of the token from embedding + position code, against width.")


def vocab_cost(claim, plt):
    r = _one(claim, "generator_flops_by_vocab")
    if not r or not isinstance(r["value"], dict):
        return None
    vs = sorted(r["value"], key=float)
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot([float(v) for v in vs], [r["value"][v] for v in vs], "o-", label="counted")
    ax.set_xlabel("vocabulary size V (tokens)")
    ax.set_ylabel("FLOPs of the output projection")
    ax.legend()
    return fig, "Counted FLOPs of the generator against vocabulary size: linear in V."


def saturation(claim, plt):
    rows = sorted(_records(claim, "softmax_saturation"), key=lambda r: r["params"].get("beta", 0))
    if len(rows) < 2:
        return None
    betas = [r["params"]["beta"] for r in rows]
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(betas, [r["value"]["max_weight"] for r in rows], "o-", label="largest weight")
    ax.plot(betas, [r["value"]["jacobian_norm"] for r in rows], "s-", label="‖softmax Jacobian‖_F")
    ax.set_xscale("log")
    ax.set_xlabel("logit scale β (multiplier)")
    ax.set_ylabel("weight / Jacobian norm (unitless)")
    ax.legend()
    return fig, ("Softmax saturation through the model's attention: as the logits grow the largest weight tends "
                 "to 1 and the Jacobian to 0.")


def unscaled_gradient(claim, plt):
    rows = _records(claim, "near_one_hot_fraction")
    if len(rows) < 2:
        return None
    rows = sorted(rows, key=lambda r: str(r["params"].get("scores")))
    fig, ax = plt.subplots(figsize=SIZE)
    labels = [str(r["params"].get("scores")) for r in rows]
    ax.bar(labels, [r["value"] for r in rows], yerr=_error_bars(rows), capsize=4)
    ax.set_ylim(0, 1)
    ax.set_xlabel("scores")
    ax.set_ylabel("fraction of rows with max weight > 0.99")
    return fig, "At d_k = 512 unscaled scores give mostly near one-hot rows; scaled ones almost never do."


def noam(claim, plt):
    r = _one(claim, "noam_rate_curve")
    if not r or not isinstance(r["value"], dict):
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(r["value"]["step"], r["value"]["lr"], label="rate used by the scheduler")
    warmup = r["params"].get("warmup")
    if warmup:
        ax.axvline(warmup, color="gray", linestyle="--", label=f"warmup = {warmup}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("learning rate")
    ax.legend()
    return fig, "The Noam schedule of the base model: a linear rise to the warmup step, then decay as step^-0.5."


def conformance_grid(ledger, plt):
    rows = ledger.get("conformance") or []
    if not rows:
        return None
    impls = sorted({r["implementation"] for r in rows})
    props = sorted({r["property"] for r in rows})
    score = {"passed": 2, "xfailed": 1, "skipped": 0, "failed": -1, "error": -1, "xpassed": -1}
    grid = [[math.nan] * len(impls) for _ in props]
    for r in rows:
        i, j = props.index(r["property"]), impls.index(r["implementation"])
        value = score.get(r["outcome"], 0)
        grid[i][j] = value if math.isnan(grid[i][j]) else min(grid[i][j], value)
    from matplotlib.colors import ListedColormap

    fig, ax = plt.subplots(figsize=(max(SIZE[0], 1.2 * len(impls) + 3), max(2.5, 0.28 * len(props) + 1.5)))
    cmap = ListedColormap(["#cf222e", "#d0d7de", "#d4a72c", "#1a7f37"])
    ax.imshow(grid, cmap=cmap, vmin=-1.5, vmax=2.5, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(impls)), impls, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(props)), props, fontsize=7)
    ax.set_xlabel("implementation")
    ax.set_ylabel("property")
    ax.set_title("green passed · yellow expected failure · grey not run · red failed", fontsize=8)
    fig.tight_layout()
    return fig, "The conformance matrix: each cell is the outcome of the test of that property on that implementation."


#: claim id -> plot functions, in page order.
CLAIM_PLOTS: dict[str, list[Callable]] = {
    "attn.qk-variance": [qk_variance],
    "attn.softmax-saturation": [saturation],
    "attn.unscaled-vanishing-gradient": [unscaled_gradient],
    "qk.no-projection-self-dominant": [diagonal_argmax],
    "attn.complexity": [core_flops],
    "arch.block-cost": [block_cost],
    "heads.specialise": [positional_heads],
    "attn.sparse-rows": [head_entropy],
    "heads.prunable": [pruning_curve],
    "attn.additive-vs-dot-large-dk": [additive_vs_dot],
    "pe.long-range-decay": [similarity_decay],
    "pe.why-10000": [base_horizon],
    "tie.nearest-row-wins": [nearest_row],
    "pe.preserves-token-identity": [token_identity],
    "tie.shared-vocab-cost": [vocab_cost],
    "train.noam-schedule": [noam],
}


def _save(fig, plt, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def draw_plots(ledger: dict, directory: Path) -> dict[str, list[dict]]:
    """Draw every plot whose records are in ``ledger`` into ``directory/plots``; claim id -> plot entries
    ``{"id", "file" (relative to directory), "caption", "alt", "width", "height"}``; ``"_conformance"`` for the grid,
    ``"_failed"`` for plots whose drawing raised (the page names them)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ledger", "font.size": 9, "axes.grid": True,
                         "grid.alpha": 0.3, "figure.dpi": 96})
    folder = Path(directory) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.svg"):
        old.unlink()
    claims = {c["id"]: c for c in ledger["claims"]}
    out: dict[str, list[dict]] = {}

    def keep(key: str, slug: str, draw: Callable) -> None:
        try:
            drawn = draw()
        except Exception as exc:  # noqa: BLE001 - a plot that cannot be drawn must not cost the ledger
            plt.close("all")
            failed.append(f"{slug}: {type(exc).__name__}: {exc}")
            return
        if drawn is None:
            return
        fig, caption = drawn
        width, height = (round(v * 96) for v in fig.get_size_inches())
        file = folder / f"{slug}.svg"
        _save(fig, plt, file)
        out.setdefault(key, []).append({"id": f"plot-{slug}", "file": f"plots/{file.name}", "caption": caption,
                                        "alt": caption, "width": width, "height": height})

    failed: list[str] = []
    for cid, functions in CLAIM_PLOTS.items():
        if cid not in claims:
            continue
        for function in functions:
            keep(cid, f"{cid.replace('.', '-')}-{function.__name__.replace('_', '-')}",
                 lambda f=function, c=claims[cid]: f(c, plt))
    keep("_conformance", "conformance-grid", lambda: conformance_grid(ledger, plt))
    if failed:
        out["_failed"] = [{"error": e} for e in failed]
    return out
