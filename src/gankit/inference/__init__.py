"""Using a trained generator: load it, sample from it, write samples, export it.

  trained.py   `load(run_dir)` (gankit.load) -> `TrainedGenerator`: .sample(n), or a torch Module
  sampling.py  seeded noise in, float images or a uint8 grid out, in blocks (memory stays flat)
  generate.py  `generate(run_dir, n, out)` (gankit.generate): a grid, an .npy, a folder, latent walks, a GIF
  export.py    `export(run_dir)` (gankit.export): the generator as ONNX
  outputs.py   where commands may write: never into a run directory, an existing output only with --force
  fake_sources.py  FAKES (a run, a folder of images, an .npy) read as uint8 images, never resized: what
               `gankit detect` and `gankit evaluate --fakes` are given as generated

This file imports nothing.
"""
