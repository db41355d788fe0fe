"""Models: the architectures by name, and a run's G and D built from its config.

  registry.py  `MODELS` (name -> architecture module), `build(name, ...) -> (G, D)`, `from_config(cfg)`, class
               conditioning and spectral normalization (what works on every architecture), `run`,
               `class_labels`, `eval_mode`
  dcgan.py     DCGAN networks: the DCGAN-on-MNIST project's stack at 28x28, the standard one at 32 and 64
  mlp.py       the simple-GAN tutorial's fully connected networks
  widths.py    the width multipliers (`g_width`, `d_width`) as every architecture applies them

An architecture module has build(z_dim, channels, image_size, d_norm, g_width, d_width, d_widths) -> (G, D),
d_channels(image_size) (D's default layer widths) and check_size; each discriminator exposes `body` (images ->
features) and `head` (features -> logit). A new architecture is one module plus one line in registry.MODELS.

This file imports nothing, so that importing one architecture costs only that.
"""
