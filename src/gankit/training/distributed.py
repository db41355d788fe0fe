"""Several processes with torch.distributed, launched by torchrun; nothing changes without it.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous). gankit starts the process group itself
(nccl on CUDA, gloo on the CPU), puts rank r on cuda:LOCAL_RANK, and tears the group down on every exit.

The rules the trainer follows (see gankit.training.trainer):
- every rank computes the same training: it draws the global batch's permutation, noise and augmentation
  from the shared seeded stream and takes its own rows (`Rows`), so N processes train what one process
  with the same global batch would, up to the order of floating-point sums;
- rank 0 alone writes the run directory; every other rank waits at a barrier where rank 0 writes what
  they depend on (the checkpoint);
- a decision that ends training (early stop, time limit, an error before training) is made once, on
  rank 0, and shared (`shared`); a Ctrl-C on any rank is noted, not raised (`Interrupts`), and every rank
  stops after the same step once they have all heard of it (`any_rank`).
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import threading
import time
import warnings
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gankit.devices import World
from gankit.errors import GankitError


def start(world: World, device: torch.device, timeout: float = 300.0) -> torch.device:
    """Join the process group (once) and return this rank's device: cuda:LOCAL_RANK on CUDA. `timeout` (seconds,
    the config's group_timeout) bounds how long a rank waits in a collective for a silent process (a machine that
    hangs) before it gives up with one line; a process that dies is noticed at once (its connections close)."""
    if device.type == "cuda" and world.several:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if world.several and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout))
    return device


DIST_ERRORS = tuple(t for t in (getattr(dist, "DistError", None),) if t)  # torch >= 2.2
# what gloo and NCCL say when another process of the group died or went silent
PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout",
             "communicator was aborted", "nccl error", "socket closed")


@contextlib.contextmanager
def peers(world: World, what_is_intact: Callable[[], str]):
    """A process of the group that dies (a machine lost, a worker killed) or hangs past group_timeout surfaces in
    the others as an error from a collective: it becomes one line that says so and what is intact."""
    try:
        yield
    except RuntimeError as exc:  # torch's DistBackendError and gloo's errors are RuntimeErrors
        text = str(exc).lower()
        if not world.several or not (isinstance(exc, DIST_ERRORS) or any(s in text for s in PEER_LOST)):
            raise
        cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise GankitError(f"another process of the training group stopped or stopped answering ({cause[:160]}); "
                          f"{what_is_intact()}") from None


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(world: World, device: torch.device, *modules: torch.nn.Module) -> list[torch.nn.Module]:
    """Each module in DistributedDataParallel (separately: one wrapper around G and D together breaks) when
    there are several processes, else the module itself. BatchNorm buffers are not re-broadcast every
    forward: synchronized BatchNorm keeps them equal."""
    if not world.several:
        return list(modules)
    ids = [device.index] if device.type == "cuda" else None
    # channels-last weights get channels-last gradients, which DDP copies into its flat buckets: correct, a
    # little slower, and said once per process in a warning that tells a user nothing to do
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # GlobalBatchNorm's differentiable all_reduce: torch >= 2.9 calls it deprecated in favour of a private
    # module's; it still works, and the warning (printed every step) is not the user's to act on
    warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_reduce is deprecated",
                            category=FutureWarning)
    quiet = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
             else {"broadcast_buffers": False})  # the newer name (torch >= 2.12), the older one
    return [DDP(m, device_ids=ids, **quiet) for m in modules]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, over all processes, on any device.

    torch's SyncBatchNorm runs on CUDA only; this one all-reduces each channel's sum and count, then its
    sum of squared deviations (differentiable all_reduces, so gradients flow through the global statistics
    as they would in one process), and works with gloo on the CPU. Same parameters, buffers and state_dict keys as
    BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dtype, x = x.dtype, x.float()  # statistics in fp32 under bf16 autocast too, as BatchNorm keeps them
        dims, channels = [0, *range(2, x.dim())], x.shape[1]
        shape = [1, channels] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        sums = dist_nn.all_reduce(torch.cat([x.sum(dims), count]))  # two passes, as BatchNorm's own precision
        n = sums[-1]
        mean = sums[:channels] / n
        centered = x - mean.view(shape)
        var = dist_nn.all_reduce(centered.pow(2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), momentum)  # unbiased, as BatchNorm
        y = centered * torch.rsqrt(var.view(shape) + self.eps)
        return (y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y).to(dtype)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")


def synchronize_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm in module made global-batch: torch's SyncBatchNorm on CUDA, GlobalBatchNorm elsewhere.
    The parameters and buffers are the same tensors, so optimizers and the EMA keep pointing at them."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            norm = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            norm.weight, norm.bias = child.weight, child.bias
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(norm, buffer, getattr(child, buffer))
            norm.train(child.training)
            setattr(module, name, norm)
        else:
            synchronize_batchnorm(child, device)
    return module


def barrier(world: World) -> None:
    if world.several:
        dist.barrier()


def shared(world: World, decide: Callable[[], Any]) -> Any:
    """Run `decide` on rank 0 and give every rank its result; a GankitError there is raised on every rank
    (so all ranks stop with the same line instead of waiting for each other)."""
    if not world.several:
        return decide()
    box: list[Any] = [None]
    if world.main:
        try:
            box[0] = ("ok", decide())
        except GankitError as exc:
            box[0] = ("error", str(exc))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise GankitError(value)
    return value


class AgreedStop(KeyboardInterrupt):
    """A Ctrl-C that every rank agreed on (`any_rank`): every rank raises it after the same step."""


def settle(world: World) -> None:
    """Wait until every rank gets here. After an agreed stop each rank meets the others here before leaving:
    torchrun ends the remaining workers the moment one exits, and rank 0 may still be closing its files."""
    if world.several and dist.is_initialized():
        dist.barrier()


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one."""
    if not world.several:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class Interrupts:
    """Under several processes, a Ctrl-C (SIGINT) is remembered instead of raised where it lands: a rank that
    stopped alone would leave the others waiting in their next collective. The trainer asks `any_rank` at its
    checkpoints, so every rank stops after the same step. Signals that arrive together (the terminal's and
    torchrun's forwarded copy) count as one; another Ctrl-C more than `grace` seconds later stops at once.
    One process: nothing is installed, Ctrl-C raises KeyboardInterrupt as usual."""

    def __init__(self, world: World, grace: float = 2.0):
        self.world, self.grace = world, grace
        self.first: float | None = None
        self.previous: Any = None

    @property
    def requested(self) -> bool:
        return self.first is not None

    def _note(self, signum, frame) -> None:  # noqa: ARG002 - the signal handler's signature
        now = time.monotonic()
        if self.first is not None and now - self.first > self.grace:
            raise KeyboardInterrupt("stopped at once by a second Ctrl-C")
        self.first = self.first or now

    def __enter__(self) -> "Interrupts":
        if self.world.several and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def mean(world: World, values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (every rank gets it)."""
    if not world.several:
        return values
    out = values.clone()
    dist.all_reduce(out)  # SUM: gloo has no AVG
    return out.div_(world.size)
