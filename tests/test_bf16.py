"""bf16 autocast on the CPU: only where the CPU has native bf16 (read from its flags, never assumed), with the
same training as fp32 up to bf16's rounding; elsewhere fp32 and one line that says so."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gankit import config, devices
from gankit.errors import GankitError
from gankit.training.launch import resume, train

from .conftest import tiny_config


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert devices.native_bf16(_cpuinfo(tmp_path, "fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni"))
    assert devices.native_bf16(_cpuinfo(tmp_path, "fpu avx2 amx_tile amx_bf16"))
    assert not devices.native_bf16(_cpuinfo(tmp_path, "fpu sse avx2 fma avx512f avx512bw"))  # Zen 3-like
    assert not devices.native_bf16(tmp_path / "missing")


@pytest.mark.parametrize("native", [True, False])
def test_the_plan_uses_cpu_bf16_only_where_it_is_native(monkeypatch, native):
    monkeypatch.setattr(config, "native_bf16", lambda: native)
    concrete = lambda **sets: tiny_config(**{"conditional": False, "cpu_bf16": False, **sets})  # noqa: E731 - as
    # resolve_for_data leaves it
    assert config.plan(concrete(preset="dcgan", cpu_bf16=True), "cpu").autocast is native
    assert config.plan(concrete(preset="dcgan", cpu_bf16=False), "cpu").autocast is False
    with pytest.raises(ValueError):  # auto is decided before a plan is made (resolve_for_data)
        config.plan(concrete(preset="dcgan", cpu_bf16="auto"), "cpu")
    assert config.plan(concrete(preset="dcgan", amp=True), "cuda").autocast is True  # CUDA: amp, as before
    assert config.plan(concrete(cpu_bf16=True), "cpu").fused is not native  # the fused mlp step is fp32


AMX = "fpu sse avx2 fma avx512f avx512bw avx512_bf16 amx_tile amx_bf16"  # Sapphire Rapids-like
ZEN4 = "fpu sse avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni"
ZEN2 = "fpu sse avx2 fma"  # no bf16 in hardware


@pytest.mark.parametrize("flags, expected", [(AMX, True), (ZEN4, True), (ZEN2, False)])
def test_auto_resolves_from_this_machines_cpu_flags(tmp_path, monkeypatch, flags, expected):
    cpuinfo = _cpuinfo(tmp_path, flags)
    monkeypatch.setattr(config, "native_bf16", lambda: devices.native_bf16(cpuinfo))
    cfg = tiny_config(preset="dcgan")
    assert cfg.cpu_bf16 == "auto"  # the default: decided per machine
    concrete = config.resolve_for_data(cfg, 10, 1)
    assert concrete.cpu_bf16 is expected and config.plan(concrete, "cpu").autocast is expected
    # the mlp pair keeps its hand-written fp32 step wherever it runs
    mlp = config.resolve_for_data(tiny_config(), 10, 1)
    assert mlp.cpu_bf16 is False and config.plan(mlp, "cpu").fused
    # what was asked for is kept as asked
    assert config.resolve_for_data(tiny_config(preset="dcgan", cpu_bf16=False), 10, 1).cpu_bf16 is False
    assert config.resolve_for_data(tiny_config(preset="dcgan", cpu_bf16="true"), 10, 1).cpu_bf16 is True


def test_the_color_preset_trains_in_fp32_even_where_bf16_is_native(monkeypatch):
    # measured: bf16 is faster but its FD worse at the preset's length (BENCHMARKS.md); asked for, it is on
    monkeypatch.setattr(config, "native_bf16", lambda: True)
    assert config.resolve_for_data(config.resolve("color"), 0, 3).cpu_bf16 is False
    assert config.resolve_for_data(config.resolve("color", sets={"cpu_bf16": "true"}), 0, 3).cpu_bf16 is True
    assert config.resolve_for_data(config.resolve("dcgan"), 10, 1).cpu_bf16 is True


def test_auto_is_recorded_in_config_toml_as_what_it_became(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "native_bf16", lambda: False)  # an AVX2-only machine: fp32, and no note about it
    train(tiny_config(preset="dcgan", subset=64, eval_every=0), tmp_path / "run", progress=False)
    text = (tmp_path / "run" / "config.toml").read_text()
    assert "cpu_bf16 = false" in text and "auto" not in text.split("cpu_bf16")[1].splitlines()[0]
    assert config.load(tmp_path / "run" / "config.toml").cpu_bf16 is False
    with pytest.raises(GankitError, match="'cpu_bf16' expects true, false or auto"):
        config.resolve("dcgan", sets={"cpu_bf16": "maybe"})


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_never_turns_on_autocast_on_cuda(monkeypatch, native):
    # amp alone decides on CUDA: cpu_bf16 is about the CPU
    monkeypatch.setattr(config, "native_bf16", lambda: native)
    cfg = tiny_config(preset="dcgan", conditional=False, amp=False, cpu_bf16=True)
    assert config.plan(cfg, "cuda").autocast is False


def test_cpu_bf16_may_change_on_resume(monkeypatch, tmp_path, capsys):
    # machinery, not the run's identity: turning it on for a resumed run is allowed
    monkeypatch.setattr(config, "native_bf16", lambda: False)
    train(tiny_config(eval_every=0), tmp_path / "run", progress=False)
    assert resume(tmp_path / "run", {"epochs": 2, "cpu_bf16": True}, progress=True).epochs == 2
    assert "cpu_bf16: this CPU has no native bf16" in capsys.readouterr().err
    assert "cpu_bf16 = true" in (tmp_path / "run" / "config.toml").read_text()


def test_without_native_bf16_a_run_trains_in_fp32_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(config, "native_bf16", lambda: False)
    train(tiny_config(cpu_bf16=True, eval_every=0), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "cpu_bf16: this CPU has no native bf16" in err and "training in fp32" in err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


LINEAR = torch.nn.Linear.forward


def _run(tmp_path, monkeypatch, bf16: bool):
    """A 4-epoch simple-gan run on 2,000 digits (seed 0), evaluated at its end; the dtype its G computed in."""
    monkeypatch.setattr(config, "native_bf16", lambda: bf16)
    seen = set()

    def spy(self, x):
        out = LINEAR(self, x)
        seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", spy)
    cfg = config.resolve("simple-gan", subset=2000, batch_size=32, epochs=4, device="cpu", sample_count=16,
                         log_every=8, eval_every=4, eval_samples=1000, seed=0, cpu_bf16=bf16)
    result = train(cfg, tmp_path / f"run-{bf16}", progress=False)
    rows = [json.loads(line) for line in (tmp_path / f"run-{bf16}" / "metrics.jsonl").read_text().splitlines()]
    losses = [r[k] for r in rows if r["kind"] == "train" for k in ("loss_D", "loss_G")]
    return result, seen, losses


def test_bf16_training_matches_fp32_within_the_seed_spread(tmp_path, monkeypatch):
    # (this host may emulate bf16: slow, but the numerics are the same as on a CPU that has it)
    fp32, seen32, losses32 = _run(tmp_path, monkeypatch, False)
    bf16, seen16, losses16 = _run(tmp_path, monkeypatch, True)
    assert torch.bfloat16 in seen16 and seen32 == {torch.float32}  # autocast really ran, and only when asked
    assert all(math.isfinite(x) for x in losses16) and len(losses16) == len(losses32)
    # FD of 3 seeds at this length, measured: fp32 962-1047, bf16 970-1048 (BENCHMARKS.md); the same seed's two
    # runs differ by 0.1-3.5%
    assert abs(bf16.best_fd - fp32.best_fd) < 0.15 * fp32.best_fd, (bf16.best_fd, fp32.best_fd)
    assert bf16.last["loss_D"] != fp32.last["loss_D"]  # not the fp32 run again
