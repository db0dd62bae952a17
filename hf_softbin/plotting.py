"""Figures the package draws: a run's validation curve, and the PNG writer every figure goes through."""

import io

from .atomic import write_bytes_atomic


def plot_curve(history: list[dict], path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([point["step"] for point in history], [point["valid_ppl"] for point in history], marker="o")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("validation perplexity")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path, dpi=100)


def save_figure(figure, path: str, dpi: int) -> None:
    """Render a laid-out matplotlib figure to PNG and write it atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
