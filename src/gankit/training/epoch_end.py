"""The end of each epoch and of the run, a part of `gankit.training.trainer.Trainer` (which inherits it): rank 0
writes the fixed-noise grid, the exported generator, the evaluation when due and then the checkpoint, while the
other ranks wait; at the end, the loss curves, the progress GIF and the run's summary.

It works on the Trainer's state (cfg, G_sampled, quality, log, health, run_dir, world, epoch, step).
"""

from __future__ import annotations

import torch

from gankit import images as images_mod
from gankit.files import atomic_write
from gankit.inference.sampling import sample_grid
from gankit.models.registry import class_labels
from gankit.report.plots import plot_loss_curves, write_progress_gif
from gankit.run import checkpoint, generator_file, layout
from gankit.training import distributed
from gankit.training.result import RunResult


class EpochEnd:
    """Trainer's end of epoch (`end_epoch`) and end of run (`finish`)."""

    # ------------------------------------------------------------------ end of epoch
    def evaluations_left(self) -> int:
        """The evaluations still due in this run (each at the end of an epoch)."""
        every, last = self.cfg.eval_every, self.cfg.epochs
        if not self.quality or self.epoch >= last:
            return 0
        return last // every - self.epoch // every + (last % every != 0)  # every k-th epoch, and the last

    def end_epoch(self, seconds: float, steps: int, out_of_time: bool) -> str | None:
        """Rank 0 writes the epoch's files and checkpoint while the others wait; its decision to stop (early
        stop, time limit), or its error, is every rank's."""
        self.epoch += 1

        def write() -> str | None:
            with self.writes():  # inside shared: rank 0's failed write is every rank's line
                return self._write_epoch(seconds, steps, out_of_time)

        stopped = distributed.shared(self.world, write)
        self.saved_epoch = self.epoch
        if stopped:
            self.say(stopped)
        return stopped

    def _write_epoch(self, seconds: float, steps: int, out_of_time: bool) -> str | None:
        """Fixed-noise grid, generator export, evaluation when due, then the checkpoint (last, atomically).
        Returns why training stops now or None."""
        cfg = self.cfg
        self.recalibrate_ema()
        grid = sample_grid(self.G_sampled, self.fixed_noise, self.fixed_labels, nrow=cfg.num_classes or None)
        atomic_write(self.run_dir / layout.SAMPLES / layout.epoch_grid(self.epoch),  # a link replaced, not followed
                     lambda tmp: images_mod.save_grid(grid, tmp))
        self.log.epoch(self.epoch, self.step, seconds, steps * cfg.batch_size / max(seconds, 1e-9), grid)
        self.write_generator(layout.GENERATOR)
        stopped = None
        if self.quality and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs or out_of_time):
            stopped = self.evaluate()
        if out_of_time:
            stopped = self.time_stop()
        checkpoint.save_checkpoint(self.state_dict(), self.run_dir)  # a failure leaves the previous one
        return stopped

    def recalibrate_ema(self) -> None:
        """EMA generator: BatchNorm statistics for the averaged weights, from noise seeded by the step, with
        labels in the data's class mix."""
        if not self.ema:
            return
        cfg, device, counts = self.cfg, self.device, self.data.class_counts()
        g = torch.Generator(device).manual_seed(cfg.seed * 7919 + self.step)
        self.ema.recalibrate(lambda n: (torch.randn(n, cfg.z_dim, device=device, generator=g),
                                        class_labels(n, cfg.num_classes, device, prior=counts)))

    def write_generator(self, name: str) -> None:
        """generator.safetensors or best.safetensors: the sampled generator with what describes it."""
        generator_file.export_generator(self.G_sampled, self.cfg, self.run_dir, name=name, epoch=self.epoch,
                                        step=self.step, classes=self.data.classes)

    def evaluate(self) -> str | None:
        """Measure G_sampled against the real reference; keep it as best.safetensors when FD improved.
        Returns the early-stop reason or None."""
        quality, cfg = self.quality, self.cfg
        best_covered = quality.state.best_covered
        values = quality.measure(self.G_sampled, cfg.z_dim, cfg.seed, self.device, cfg.num_classes)
        improved, stop = quality.record(values, self.epoch)
        self.log.evaluation(self.epoch, self.step, values, quality.floor, quality.n, quality.fingerprint[:12])
        for finding in self.health.on_eval(self.epoch, self.step, values, quality.reference.num_classes,
                                           best_covered, quality.state.evaluations):
            self.warn(finding)
        if improved:
            self.write_generator(layout.BEST)
        return stop

    # ------------------------------------------------------------------ finish
    def finish(self, stopped: str | None, seconds: float, trained: int) -> RunResult:
        """Loss curves and the progress GIF (rank 0); the run's summary."""
        if self.world.main:
            plot_loss_curves(self.run_dir / layout.METRICS, self.run_dir / layout.LOSS_CURVES,
                             probability=self.loss.probability)
            write_progress_gif(self.run_dir)
        best = self.quality.state if self.quality else None
        return RunResult(self.run_dir, self.epoch, self.step, seconds, trained / max(seconds, 1e-9), self.log.last,
                         stopped, best.best_fd if best else None, best.best_epoch if best else 0,
                         [f.line() for f in self.health.findings])
