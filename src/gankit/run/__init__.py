"""The run directory on disk: the unit a user holds (resume, sample, evaluate, detect, report read only it).

  layout.py          every file name of a run directory (and of a detector folder), defined once
  lock.py            one writer per run directory: a new run claims an empty folder, a resume takes the lock
  checkpoint.py      checkpoint.pt: written atomically, loaded without pickled code, checked before restoring
  generator_file.py  generator.safetensors / best.safetensors (the self-describing generator) and config.toml
  metrics_log.py     metrics.jsonl (its one owner, `MetricsFile`) and the training log (TensorBoard + jsonl)

This file imports nothing.
"""
