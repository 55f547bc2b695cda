"""The evidence report's three plots, drawn from the written ``evidence.json`` only.

``python benchmarks/evidence_recompute.py`` draws them (into ``docs/evidence/``, beside the report) from
the JSON it writes; :func:`plot_all` takes that JSON.
"""

from __future__ import annotations

from pathlib import Path


def _plt():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cot(cb, path):
    """Section 3: majority accuracy vs forward positions, token CoT and latent, with greedy stars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.6, 4.3))
    keys = list(cb["cot"])  # the Ns, as the JSON holds them
    for k, v in cb.get("truncated", {}).items():
        ax.scatter([v["positions_per_question"]], [100 * v["accuracy"]], marker="v", s=60, color="tab:orange",
                   edgecolor="k", zorder=5, label=f"CoT greedy, {'no chain' if int(k) == 0 else f'cut after step {k}'}")
    for name, pts, color in (("token CoT, temperature %g" % cb["temperature"]["chosen"], cb["cot"], "tab:orange"),
                             ("latent (COCONUT), MC dropout p=0.2", cb["latent_dropout_p0.2"], "tab:blue")):
        xs = [pts[k]["positions_per_question"] for k in keys]
        ys = [100 * pts[k]["majority_accuracy"] for k in keys]
        lo = [100 * (pts[k]["majority_accuracy"] - pts[k]["ci95"][0]) for k in keys]
        hi = [100 * (pts[k]["ci95"][1] - pts[k]["majority_accuracy"]) for k in keys]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=color, label=name + ", majority@N")
        for k, x, y in zip(keys, xs, ys):
            ax.annotate(f"N={k}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=7, color=color)
    for name, key, color in (("CoT greedy", "cot", "tab:orange"), ("latent greedy", "latent", "tab:blue")):
        g = cb["greedy"][key]
        ax.scatter([g["positions_per_question"]], [100 * g["accuracy"]], marker="*", s=110, color=color,
                   edgecolor="k", zorder=5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("forward token positions per question (prompt + latent steps or chain + answer tokens)")
    ax.set_ylabel(f"test accuracy, % ({cb['questions']} questions, mean of {cb['seeds']} seeds)")
    ax.set_title("Equal compute: token chain of thought vs latent reasoning (95% bootstrap CI)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_readout(sem, path):
    """Section 1: read-out metrics per sampling setting, step-1 value and step-2 ones digit of x1."""
    plt = _plt()
    names = ["greedy"] + list(sem["settings"])
    metrics = [("decoded_accuracy", "decoded right"), ("differs_from_greedy", "differs from greedy"),
               ("unstructured", "no number"), ("p_final_right_given_right", "P(answer right | decoded right)"),
               ("p_final_right_given_wrong", "P(answer right | decoded wrong)")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    panels = [("step1_x1", "step-1 latent: value of x1 (MLP probe on greedy latents)"),
              ("step2_x1_ones", "step-2 latent: ones digit of x1 (linear probe)")]
    w = 0.8 / len(metrics)
    for ax, (probe, title) in zip(axes, panels):
        rows = [sem["greedy"][probe]] + [sem["settings"][n][probe] for n in names[1:]]
        for k, (key, label) in enumerate(metrics):
            ax.bar([i + k * w for i in range(len(names))], [100 * (r[key] if r[key] is not None else 0) for r in rows],
                   width=w, label=label)
        ans = [0] + [100 * sem["settings"][n]["answer_differs_from_greedy"] for n in names[1:]]
        ax.scatter([i + 0.4 - w / 2 for i in range(len(names))], ans, marker="_", s=300, color="k", zorder=5,
                   label="final answer differs from greedy")
        ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))])
        ax.set_xticklabels(names, fontsize=7, rotation=25, ha="right")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(f"% of trajectories (N={sem['n']}, {sem['questions']} test questions)")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=6)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_auroc(rm, path, rm_sha256=None):
    """Section 3: within-question AUROC of the RM step score and of vote share per setting."""
    plt = _plt()
    rm = {"settings": rm}
    names = list(rm["settings"])
    fig, ax = plt.subplots(figsize=(8, 4.2))
    series = [("step1_x1_ones", "rm_step_score", "RM step-1 score / x1 (ones digit) right"),
              ("step1_x1_ones", "vote_share", "vote share / x1 (ones digit) right"),
              ("step2_final_answer", "rm_step_score", "RM step-2 score / answer right"),
              ("step2_final_answer", "vote_share", "vote share / answer right")]
    w = 0.8 / len(series)
    for k, (lab, score, label) in enumerate(series):
        vals = [rm["settings"][nm][lab][score] for nm in names]
        num = lambda x: float("nan") if x is None else x  # noqa: E731  (no qualifying question)
        ys = [num(v["mean"]) for v in vals]
        err = [[y - num(v["ci"][0]) for y, v in zip(ys, vals)], [num(v["ci"][1]) - y for y, v in zip(ys, vals)]]
        ax.bar([i + k * w for i in range(len(names))], ys, width=w, label=label, yerr=err, capsize=2)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))])
    ax.set_xticklabels(names, fontsize=7, rotation=20, ha="right")
    ax.set_ylabel("within-question AUROC (mean over questions)")
    if rm_sha256:
        ax.set_title(f"LatentRM weights sha256 {rm_sha256[:12]}...", fontsize=8)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_all(report, out_dir):
    """The three PNGs of a report (the CoT plot only when section 3 ran) into ``out_dir``."""
    out_dir = Path(out_dir)
    plot_readout(report["latent_semantics"], out_dir / "evidence_latent_readout.png")
    plot_auroc(report["rm"], out_dir / "evidence_rm_auroc.png", report["meta"].get("rm_sha256"))
    if isinstance(report.get("cot"), dict):
        plot_cot(report["cot"], out_dir / "evidence_cot_vs_latent.png")

