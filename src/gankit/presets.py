"""The presets: hyperparameters from the tutorials, as config values over the defaults of gankit.config.Config.

Plain data with no import, so that the command line lists them without importing torch.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The simple-GAN tutorial: MLP G/D, Adam 3e-4 with default betas, z 64, batch 32, 50 epochs.
    "simple-gan": dict(model="mlp", lr=3e-4, beta1=0.9, beta2=0.999, z_dim=64, batch_size=32, epochs=50,
                       rotation=0.0, conditional=False),
    # The DCGAN project: lr 2e-3, betas (0.5, 0.99), noise 64, batch 128, 20 epochs. Changes, each chosen from
    # benchmarks/losses.py (BENCHMARKS.md): no RandomRotation(20) (augmenting only the reals teaches G
    # rotated digits: FD 109 -> 51) and a generator EMA of 0.999 (FD 51 -> 23), at an equal time budget; the
    # dcgan model's 28x28 D is wider than the project's (gankit.models.dcgan); on a labeled source the models
    # are class-conditional (conditional=auto), trained 30 epochs (mnist5k, mean of 3 seeds: FD 3.4x the
    # real-vs-real floor unconditional at 20 epochs, 2.2x conditional at 20, 1.8x conditional at 30).
    # `--set rotation=20 --set ema=0 --set d_channels=16,32,64 --set conditional=false --set epochs=20` is the
    # tutorial exactly. Evaluations every 2 epochs: one costs ~0.8 s of a ~3.4 s epoch on a 2-core CPU.
    "dcgan": dict(model="dcgan", lr=2e-3, beta1=0.5, beta2=0.99, z_dim=64, batch_size=128, epochs=30,
                  rotation=0.0, ema=0.999, eval_every=2),
    # A folder of color pictures (what `gankit train --data folder:PATH` picks when the pictures have color),
    # chosen by benchmarks/color_preset.py on the 3,926 emoji (BENCHMARKS.md): the dcgan preset's optimizer,
    # batch and EMA (at 4 minutes they beat lr 2e-4 / betas (0.5, 0.999), batch 64, hinge and DiffAugment by
    # 2.4x to 4.7x in FD), plus ADA: at 300 kimg without it D overfits (health: d_wins) and FD stalls at 4.0x
    # the floor; with ADA 2.8x, against 3.4x with flips and 3.1x with DiffAugment translation. 300 kimg is
    # ~10 minutes on 2 cores at 32x32 (the run says its own estimate); an evaluation every 5 epochs.
    # fp32 even where the CPU has bf16 (cpu_bf16=auto would take it): measured at 300 kimg on an AMX host, bf16 is
    # 1.8x faster but its best FD is worse on both seeds (5.67 and 4.46 against fp32's 4.23 and 4.22);
    # `--set cpu_bf16=true` trades that for the speed.
    "color": dict(model="dcgan", image_size=32, lr=2e-3, beta1=0.5, beta2=0.99, z_dim=64, batch_size=128,
                  kimg=300, rotation=0.0, ema=0.999, ada=True, eval_every=5, cpu_bf16=False),
}
