"""Retraining pipelines: definitions, triggers, runs as persisted jobs, a worker, and the evaluation gate."""
