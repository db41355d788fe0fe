"""Adam for the generator and the discriminator, on torch's fused Adam kernel, without torch.optim.

Why not torch.optim.Adam: its Optimizer imports torch._dynamo the first time it is used (its methods are
wrapped in torch._disable_dynamo), 1.2-1.5 s on a 2-core CPU in every training process, a third of
`gankit train`'s fixed start-up, for a compiler the optimizer step never uses here. This class runs the very
update torch.optim.Adam(fused=True) runs (the step counts incremented, then `torch._fused_adam_`: the same
kernel, bit for bit, tested), keeps the state in torch.optim.Adam's layout (`state[param]` with step,
exp_avg, exp_avg_sq; `param_groups`), and its state_dict is torch.optim.Adam's, so checkpoints load in either.
Where the kernel does not serve the parameters' device, `adam()` returns torch.optim.Adam itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gankit.errors import GankitError

FUSED_DEVICES = ("cpu", "cuda")  # where torch._fused_adam_ runs (torch >= 2.4)
STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")  # one parameter's state, as torch.optim.Adam keeps it


class Adam:
    """Adam (no weight decay, no amsgrad) over one group of parameters; the interface gankit's trainer uses:
    param_groups, state, step(), update(params, grads), zero_grad(), state_dict(), load_state_dict()."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param_groups: list[dict[str, Any]] = [{
            "params": list(params), "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": 0.0,
            "amsgrad": False, "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
            "fused": True, "decoupled_weight_decay": False}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def _moments(self, params: list[torch.Tensor]) -> tuple[list, list, list]:
        """(steps, exp_avgs, exp_avg_sqs) of params, made (zero) on a parameter's first update."""
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return tuple([self.state[p][key] for p in params] for key in STATE_KEYS)

    @torch.no_grad()
    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """One Adam step of params (all of this optimizer's) with these gradients: what step() does with
        their .grad, for callers that computed gradients themselves (gankit.training.fused)."""
        if not params:
            return
        group = self.param_groups[0]
        steps, exp_avgs, exp_avg_sqs = self._moments(params)
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)  # as torch.optim's fused path does before its kernel
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"], beta1=beta1,
                           beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
                           maximize=group["maximize"])

    def step(self) -> None:
        """Update every parameter that has a gradient (those without one are left alone, as torch.optim does)."""
        params = [p for p in self.param_groups[0]["params"] if p.grad is not None]
        self.update(params, [p.grad for p in params])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Adam's layout: state by parameter index, the group's settings with indices for params."""
        params = self.param_groups[0]["params"]
        settings = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {i: dict(self.state[p]) for i, p in enumerate(params) if p in self.state},
                "param_groups": [{**settings, "params": list(range(len(params)))}]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """A state_dict of this class or of torch.optim.Adam over the same parameters: the saved lr, betas and
        eps, and moments (copies in their parameter's device, dtype and memory layout: the fused kernel walks memory
        flat; step counts float32 on it). An empty per-parameter state leaves that parameter to start afresh,
        as torch.optim does. Raises ValueError when the saved state is not one group of as many parameters
        (indices 0..n-1) with, for each, a dict."""
        groups = saved["param_groups"]
        params = self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError("the saved state has another number of parameter groups or parameters")
        ids = groups[0]["params"]
        if any(type(i) is not int for i in ids) or sorted(ids) != list(range(len(params))):
            raise ValueError(f"its parameters are numbered {ids[:8]}, not 0 to {len(params) - 1}")
        index = dict(zip(ids, params))
        state: dict[torch.Tensor, dict[str, Any]] = {}
        for key, values in saved["state"].items():
            if type(key) is not int or key not in index:
                raise ValueError(f"it holds state for parameter {key!r}, which this model does not have")
            if not isinstance(values, dict):
                raise ValueError(f"the state of parameter {key} is a {type(values).__name__}, not a dict")
            if values:
                state[index[key]] = {name: _placed(value, index[key], name) for name, value in values.items()}
        self.state = state
        # the settings this update uses; the rest (amsgrad, weight_decay, maximize...) stay this class's own
        self.param_groups[0].update({k: groups[0][k] for k in ("lr", "betas", "eps") if k in groups[0]})


def _placed(value: Any, param: torch.Tensor, name: str) -> Any:
    """A copy of value on param's device: a step count as float32, a moment in param's dtype and layout.
    Anything else (another shape, a sparse tensor, not a tensor) as it is, for the caller's checks to name."""
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        return value
    if name == "step":
        return value.to(dtype=torch.float32, device=param.device, copy=True)
    if value.is_floating_point() and value.shape == param.shape:
        return torch.empty_like(param).copy_(value)
    return value


def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float]) -> Any:
    """This module's Adam where the fused kernel runs on the parameters' device, else torch.optim.Adam."""
    params = list(params)
    if all(p.device.type in FUSED_DEVICES and p.dtype in (torch.float32, torch.float64) for p in params) and \
            hasattr(torch, "_fused_adam_"):
        return Adam(params, lr=lr, betas=betas)
    return torch.optim.Adam(params, lr=lr, betas=betas)


__all__ = ["Adam", "STATE_KEYS", "adam"]


def load_checked(optimizer: Adam | torch.optim.Optimizer, saved: dict[str, Any], name: str) -> None:
    """A checkpoint's Adam state (step counts and moment estimates, each checked against its parameter) into
    optimizer; what does not fit is one line (GankitError), never a traceback or a silent reset. Its
    hyperparameters stay the optimizer's own, which come from the run's config."""
    groups = saved.get("param_groups")
    if not isinstance(saved.get("state"), dict) or not isinstance(groups, list) or not all(
            isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise GankitError(f"its {name} is not an optimizer's state (state and param_groups)")
    sizes, own = [len(g["params"]) for g in groups], [len(g["params"]) for g in optimizer.param_groups]
    if sizes != own:
        raise GankitError(f"its {name} does not fit this run's optimizer (parameter groups of {sizes} "
                          f"parameters, this model's: {own})")
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict({"state": saved["state"],
                                   "param_groups": [{**g, **s} for g, s in zip(groups, settings)]})
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise GankitError(f"its {name} does not fit this run's optimizer ({str(exc).splitlines()[0]})") from None
    for group in optimizer.param_groups:
        for param in group["params"]:
            _check_adam_state(optimizer.state.get(param, {}), param, name)


def _check_adam_state(state: dict[str, Any], param: torch.Tensor, name: str) -> None:
    """One parameter's Adam state: nothing (it starts afresh), or exactly a step count and two moments, each
    a dense float tensor of the right shape holding finite values that Adam could have produced."""
    if not state:
        return
    of = f"for a parameter of shape {tuple(param.shape)}"
    if set(state) != set(STATE_KEYS):
        raise GankitError(f"its {name} holds {sorted(map(str, state))} {of}: not Adam's state (step, exp_avg, "
                          "exp_avg_sq)")
    for key, value in state.items():
        shape = () if key == "step" else param.shape
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or not value.is_floating_point() \
                or value.shape != shape:
            what = f"{type(value).__name__} {tuple(getattr(value, 'shape', ()))}"
            raise GankitError(f"its {name} holds '{key}' ({what}) {of}: not Adam's state of this model")
        if not torch.isfinite(value).all() or (key != "exp_avg" and bool((value < 0).any())):
            raise GankitError(f"its {name} holds '{key}' {of} with values Adam never produces (negative, "
                              "infinite or NaN)")
