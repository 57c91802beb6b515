"""The per-run report: training curves, evaluation figures, example predictions, summary.md."""
