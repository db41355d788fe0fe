"""Training: start or resume a run, and the loop with everything it calls.

  launch.py       `train()` and `resume()` (gankit.train, gankit.resume): claim the run directory, start
                  torchrun's process group, build a Trainer, restore its checkpoint, fit
  trainer.py      `Trainer`: the loop top to bottom (build, restore, fit, train_epoch, train_step)
  epoch_end.py    `EpochEnd`, the Trainer's end of epoch (grid, export, evaluation, checkpoint) and `finish`
  budget.py       `Budget`: how long a run trains (epochs or kimg, time_limit), its estimate and ETA
  result.py       `RunResult`: what a finished session hands back (its summary is what `gankit train` prints)
  steps.py        `AutogradStep`: (1) the D step, (2) the G step, with autocast, penalties, DDP
  fused.py        `FusedMLPStep`: the simple GAN's step with a hand-written backward (same math, faster)
  losses.py       the losses by name (`LOSSES`: bce, lsgan, hinge, wgan-gp) and the gradient penalties
  augment.py      `DiffAugment`: differentiable augmentation of real and fake batches before D
  ada.py          `ADA`: adaptive discriminator augmentation, its probability p fed back from D's outputs
  ema.py          `EMA`: the moving average of G's weights that is sampled and exported
  adam.py         Adam on torch's fused kernel, without torch.optim (which imports torch._dynamo)
  distributed.py  torchrun: the process group, DDP, synchronized BatchNorm, decisions shared, Ctrl-C agreed
  health.py       `Health`: a discriminator that wins too easily, mode collapse, divergence; each with a remedy

This file imports nothing, so that `import gankit.training.<module>` costs only what that module needs.
"""
