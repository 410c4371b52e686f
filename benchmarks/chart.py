"""The suite's chart: images/s against batch size for every engine, one panel per model."""

from __future__ import annotations

from benchmarks.engines import ENGINES
from benchmarks.targets import MODEL_TITLES, speeds


def draw(record: dict, path) -> None:
    """images/s against batch size, one panel per model: training solid, inference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = speeds(record)
    models = [m for m in MODEL_TITLES if any(k[0] == m for k in table)]
    figure, axes = plt.subplots(
        1, max(1, len(models)), figsize=(6 * max(1, len(models)), 4.5), squeeze=False
    )
    colours = dict(zip(ENGINES, ["tab:gray", "tab:blue", "tab:orange", "tab:green"]))
    for axis, model in zip(axes[0], models):
        for engine in ENGINES:
            for mode, style in (("train", "-o"), ("infer", "--s")):
                points = sorted(
                    (k[2], v[engine])
                    for k, v in table.items()
                    if k[0] == model and k[1] == mode and engine in v
                )
                if points:
                    xs, ys = zip(*points)
                    axis.plot(xs, ys, style, color=colours[engine], label=f"{engine} {mode}")
        axis.set(
            xscale="log",
            yscale="log",
            xlabel="batch size",
            ylabel="images/s",
            title=MODEL_TITLES[model],
        )
        batches = sorted({k[2] for k in table if k[0] == model})
        axis.set_xticks(batches, [str(b) for b in batches])  # the measured sizes, not 10^k
        axis.minorticks_off()
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("minicnn against PyTorch (training solid, inference dashed)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
