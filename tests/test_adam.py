"""gankit.training.adam: torch.optim.Adam(fused=True)'s update bit for bit, its state-dict layout both ways, and
torch.optim itself where the fused kernel does not run."""

from __future__ import annotations

import copy

import pytest
import torch

from gankit.training.adam import Adam, adam


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 1), torch.nn.Linear(1, 1))  # the last: no gradient
    return model.to(memory_format=torch.channels_last)


def _train(model: torch.nn.Module, opt, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=g).to(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        model[:4](x).square().mean().backward()  # model[4] gets no gradient: left alone
        opt.step()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_the_update_is_torch_optims_fused_adam_bit_for_bit():
    ours, theirs = _model(), _model()
    opt = Adam(ours.parameters(), lr=2e-3, betas=(0.5, 0.99))
    ref = torch.optim.Adam(theirs.parameters(), lr=2e-3, betas=(0.5, 0.99), fused=True)
    _train(ours, opt, 5)
    _train(theirs, ref, 5)
    assert _same(ours, theirs) and not _same(ours, _model())  # trained, identically
    last = list(ours.parameters())[-1]
    assert last not in opt.state and torch.equal(last, list(_model().parameters())[-1])
    mine, torchs = opt.state_dict(), ref.state_dict()
    assert mine["param_groups"] == torchs["param_groups"] and mine["state"].keys() == torchs["state"].keys()
    for i, st in torchs["state"].items():
        assert all(torch.equal(mine["state"][i][k], v) and mine["state"][i][k].dtype == v.dtype
                   for k, v in st.items())
    assert mine["state"][0]["exp_avg"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("direction", ["torch -> gankit", "gankit -> torch"])
def test_state_dicts_move_between_them_and_training_continues_alike(direction):
    first, second = _model(), _model()
    make_ours = lambda m: Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.999))  # noqa: E731
    make_torch = lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.999), fused=True)  # noqa: E731
    make_a, make_b = (make_torch, make_ours) if direction == "torch -> gankit" else (make_ours, make_torch)
    opt = make_a(first)
    _train(first, opt, 3)
    second.load_state_dict(first.state_dict())
    resumed = make_b(second)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint file
    _train(first, opt, 3, seed=2)
    _train(second, resumed, 3, seed=2)
    assert _same(first, second)
    assert resumed.state_dict()["state"][0]["step"].item() == 6


def test_loading_settles_settings_and_refuses_another_shape():
    opt = Adam(_model().parameters(), lr=1e-3)
    saved = Adam(_model().parameters(), lr=5e-4, betas=(0.1, 0.2)).state_dict()
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 5e-4 and opt.param_groups[0]["betas"] == (0.1, 0.2)
    with pytest.raises(ValueError, match="another number"):
        Adam(list(_model().parameters())[:2], lr=1e-3).load_state_dict(saved)


def test_adam_is_torch_optim_where_the_fused_kernel_does_not_run():
    cpu = torch.nn.Linear(2, 2)
    assert isinstance(adam(cpu.parameters(), 1e-3, (0.5, 0.99)), Adam)
    meta = torch.nn.Linear(2, 2, device="meta")
    fallback = adam(meta.parameters(), 1e-3, (0.5, 0.99))
    assert isinstance(fallback, torch.optim.Adam) and fallback.param_groups[0]["betas"] == (0.5, 0.99)


# Mutation pass: what the class promises beyond the trainer's own path (a step with no gradients, zero_grad that
# keeps the tensors, the ValueError contract of load_state_dict, loads that replace and copy, the factory's dtypes).
def test_a_step_with_no_gradient_at_all_changes_nothing():
    model = _model()
    opt = Adam(model.parameters(), lr=1e-3)
    opt.step()  # torch.optim skips it too; the fused kernel refuses empty lists
    assert opt.state == {} and _same(model, _model())


def test_zero_grad_can_keep_the_gradient_tensors_zeroed():
    model = _model()
    opt = Adam(model.parameters(), lr=1e-3)
    model[:4](torch.randn(2, 3, 8, 8)).square().mean().backward()
    grads = {p: p.grad for p in model.parameters() if p.grad is not None}
    assert grads and all(g.abs().sum() > 0 for g in grads.values())
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is grads[p] and not p.grad.any() for p in grads)
    assert list(model.parameters())[-1].grad is None  # no gradient: stays None
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def _shift_ids(saved, ids):
    """saved with its parameters numbered ids (the state keyed alike, as a consistent but foreign numbering)."""
    old = saved["param_groups"][0]["params"]
    saved["state"] = {ids[old.index(k)]: v for k, v in saved["state"].items()}
    saved["param_groups"][0]["params"] = list(ids)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["param_groups"].append({**s["param_groups"][0], "params": []}), "another number"),
    (lambda s: _shift_ids(s, list(range(1, 9))), "numbered"),
    (lambda s: _shift_ids(s, [False, True, 2, 3, 4, 5, 6, 7]), "numbered"),
    (lambda s: s["state"].__setitem__(0, list(s["state"][0].items())), "not a dict"),
], ids=["two-groups", "numbered-from-1", "bool-ids", "pairs"])
def test_a_state_dict_of_another_layout_is_a_value_error(change, message):
    model = _model()
    trained = Adam(model.parameters(), lr=1e-3)
    _train(model, trained, 1)
    saved = copy.deepcopy(trained.state_dict())
    change(saved)
    opt = Adam(_model().parameters(), lr=1e-3)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(saved)
    assert opt.state == {}


def test_loading_replaces_the_whole_state_as_torch_optim_does():
    model = _model()
    opt = Adam(model.parameters(), lr=1e-3)
    _train(model, opt, 2)
    nothing_yet = Adam(_model().parameters(), lr=1e-3).state_dict()
    theirs = _model()
    ref = torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)
    _train(theirs, ref, 2)
    assert len(opt.state) == len(ref.state) == 6
    opt.load_state_dict(nothing_yet)
    ref.load_state_dict(nothing_yet)
    assert opt.state == {} and len(ref.state) == 0


def test_a_loaded_state_is_the_loaders_own_copy():
    # torch.optim.Adam deep-copies what it loads: two optimizers from one state_dict in memory train apart
    first = _model()
    opt = Adam(first.parameters(), lr=1e-3, betas=(0.5, 0.999))
    _train(first, opt, 2)
    second = _model()
    second.load_state_dict(first.state_dict())
    twin = Adam(second.parameters(), lr=1e-3, betas=(0.5, 0.999))
    twin.load_state_dict(opt.state_dict())  # no deepcopy
    _train(first, opt, 1, seed=2)
    _train(second, twin, 1, seed=2)
    assert opt.state_dict()["state"][0]["step"].item() == 3 and twin.state_dict()["state"][0]["step"].item() == 3
    assert _same(first, second)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_adam_is_torch_optim_for_parameters_of_other_dtypes(dtype):
    made = adam(torch.nn.Linear(2, 2).to(dtype).parameters(), 1e-3, (0.5, 0.99))
    assert isinstance(made, torch.optim.Adam) and made.param_groups[0]["betas"] == (0.5, 0.99)
    assert isinstance(adam(torch.nn.Linear(2, 2).double().parameters(), 1e-3, (0.5, 0.99)), Adam)


def test_settings_this_update_does_not_run_are_not_taken_from_a_saved_state():
    ref = torch.optim.Adam(_model().parameters(), lr=1e-3, amsgrad=True, weight_decay=0.1, maximize=True)
    opt = Adam(_model().parameters(), lr=1e-2)
    opt.load_state_dict(ref.state_dict())
    group = opt.param_groups[0]
    assert group["lr"] == 1e-3 and not group["amsgrad"] and group["weight_decay"] == 0 and not group["maximize"]
