"""A run's workdir: checkpoints (checkpointing), earlier versions' checkpoints read as
today's (compat), metrics.jsonl and TensorBoard (metric_writers), the single-writer lock
(lock). Below the run, which writes it, and evaluation, which reads it."""
