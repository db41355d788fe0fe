"""Quality as a number: FD, KID, precision/recall and class coverage in a feature space, beside the
real-vs-real floor at the same sample size.

  metrics.py     the numbers: FD, KID, precision/recall, coverage, the floor (`Reference`: the real side)
  copying.py     is it copying? the share of fakes nearer a training image than real images are to each other
  evaluator.py   the evaluator for a source (trained once on its half A, cached) and its real reference
  classifier.py  gankit's small image classifier: the labeled evaluator, and `classify` for `classifier predict`
  selfsup.py     the label-free evaluator: the same network trained on the images alone (SimCLR's loss)
  inception.py   Inception-v3 features (`--features inception`, the optional extra)
  tracking.py    `Quality`: evaluation while training, best.safetensors, early stopping
  evaluate.py    `evaluate(run_dir, ...)` (gankit.evaluate): a run's generator measured after training;
                 `evaluate_fakes(fakes, real)`: images any tool made, measured the same way

This file imports nothing.
"""
