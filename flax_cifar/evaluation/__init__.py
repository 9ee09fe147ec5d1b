"""Evaluation: test-time views (views), the evaluation loop of training (evaluate),
inference from a workdir (inference), and `--mode=evaluate`'s report (report)."""
