"""Fake detection: is an image real or generated? (`gankit detect train | eval | score`)

A detector is a folder that describes itself like a run directory (gankit.detect.store): its config, its
weights as safetensors, a metrics.jsonl, and what it was trained on (including a hash of every real and fake
image it saw, so that no evaluation reuses them).

  base.py           `Detector`: what every method is (scores uint8 images with P(generated)), its settings
  inputs.py         real images from a data source at the detector's size; image hashes (the fakes are read
                    by gankit.inference.fake_sources)
  perturb.py        Gaussian blur and JPEG: the training augmentation and the robustness conditions
  methods.py        the registry: cnn, probe, spectrum, discriminator (one class each, one line here)
  cnn.py            a small CNN trained from scratch with blur + JPEG augmentation, early-stopped
  linear.py         a logistic-regression head on frozen features: the evaluator's (probe) or the spectrum's
  discriminator.py  a GAN run's own D as a detector (nothing trained)
  training.py       `detect train`: split, fit, write the folder atomically
  evaluation.py     `detect eval` and `detect score`: ROC AUC, AP, accuracies, the ROC curve
  scores.py         the numbers of a detection: ROC AUC, AP, accuracies, the oracle accuracy
  describe.py       evaluation records in words (fakes, conditions) for the CLI and the pages
  store.py          the detector folder on disk (its file names: gankit.run.layout)
  roc.py            the ROC figure (the detector's page is gankit.report.detector_page)
  cli.py            the `gankit detect` subcommands (imports nothing heavy until a command runs)

This file imports nothing, so that `gankit --help` stays light.
"""
