"""Several processes (torchrun, gloo, 1 thread each) train what one process trains with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.devices import Rows, World
from gankit.run import checkpoint, generator_file, layout
from gankit.run.metrics_log import MetricsFile
from gankit.training import distributed

from .conftest import children

TINY = ["--set", "subset=256", "--set", "batch_size=32", "--set", "eval_every=0", "--set", "sample_count=8",
        "--no-progress", "--device", "cpu"]


def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANKIT_CACHE_DIR": str(tmp_path / "cache")}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def gankit(tmp_path: Path, *argv: str, procs: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """`gankit ARGV` in one process, or under torchrun in `procs` processes."""
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
              if procs > 1 else [sys.executable])
    return subprocess.run([*launch, "-m", "gankit", *map(str, argv)], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=timeout)


def _rows(run: Path) -> list[dict]:
    return MetricsFile(run / "metrics.jsonl").read("train")


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> float:
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= tol, f"weights differ by {worst}"
    return worst


def _initial(run: Path) -> dict:
    from gankit.training.trainer import Trainer

    return Trainer(generator_file.load_run_config(run), run, progress=False).state_dict()  # built from the seed only


def test_two_processes_train_the_mlp_pair_as_one_process_does(tmp_path):
    # no BatchNorm: only the order of the gradient sums differs
    runs = {procs: tmp_path / f"p{procs}" for procs in (1, 2)}
    for procs, run in runs.items():
        done = gankit(tmp_path, "train", "--preset", "simple-gan", "--epochs", "1", "--out", run, *TINY,
                      "--set", "fused=false", procs=procs)
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = _rows(runs[1]), _rows(runs[2])
    assert [r["step"] for r in two] == list(range(1, 9))  # every step logged once: rank 1 writes nothing
    for a, b in zip(one, two):
        assert all(a[k] == pytest.approx(b[k], abs=1e-5) for k in ("loss_D", "loss_G", "D(x)", "D(G(z))"))
    s1, s2 = checkpoint.load_checkpoint(runs[1]), checkpoint.load_checkpoint(runs[2])
    assert set(s1["generator"]) == set(s2["generator"])  # no "module." prefixes
    _close(s1["generator"], s2["generator"], 1e-5)
    _close(s1["discriminator"], s2["discriminator"], 1e-5)
    assert torch.equal(s1["rng"], s2["rng"]) and s2["step"] == 8


def test_two_processes_train_the_conditional_dcgan_as_one_process_does(tmp_path):
    # BatchNorm statistics over both processes, per-sample rotation, DiffAugment and noise drawn for the
    # global batch. Adam moves a weight by about +-lr whatever its gradient's size, so the last bits of a
    # near-zero gradient (summed in another order) flip a few weights' steps: after one step 5 of 170,496
    # of G's first layer differ; the runs then drift apart in proportion to lr (at lr 1e-4, 1.7e-4 in loss
    # by step 5). So: lr 2e-5, losses of the first 5 steps to 1e-4, and each tensor's update within 10% of
    # the one-process update (a missing gradient average, a per-process BatchNorm statistic or a rank
    # drawing another batch's noise or augmentation differ by 30% to 100% and more).
    # (fp32 on every host: bf16's rounding is larger than the tolerances; the resume test below trains under
    # cpu_bf16=auto, bf16 where the CPU has it)
    sets = ["--set", "cpu_bf16=false", "--set", "subset=160", "--set", "lr=2e-5", "--set", "rotation=10",
            "--set", "diffaug=translation,cutout",
            "--set", "ada=true", "--set", "ada_kimg=0.2", "--set", "ada_target=0.1"]  # ADA: p from the global r_t
    runs = {procs: tmp_path / f"p{procs}" for procs in (1, 2)}
    for procs, run in runs.items():
        done = gankit(tmp_path, "train", "--preset", "dcgan", "--epochs", "1", "--out", run, *TINY, *sets,
                      procs=procs)
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = _rows(runs[1]), _rows(runs[2])
    assert len(one) == len(two) == 5
    for a, b in zip(one, two):
        assert all(a[k] == pytest.approx(b[k], abs=1e-4) for k in ("loss_D", "loss_G", "D(x)", "D(G(z))", "r_t"))
        assert a["ada_p"] == b["ada_p"]  # one p for every rank, as one process has it
    assert one[-1]["ada_p"] > 0
    start, s1, s2 = _initial(runs[1]), checkpoint.load_checkpoint(runs[1]), checkpoint.load_checkpoint(runs[2])
    for part in ("generator", "discriminator"):
        for key, value in s1[part].items():
            if value.is_floating_point() and "running" not in key:
                moved, other = value - start[part][key], s2[part][key] - start[part][key]
                assert (moved - other).norm() <= 0.1 * moved.norm(), (part, key)
                assert moved.abs().max() > 1e-5  # and they did move (5 Adam steps of at most about 2e-5)


def test_a_run_resumes_on_another_number_of_processes(tmp_path):
    run = tmp_path / "run"
    # with an evaluation: rank 0 measures alone (torchmetrics must not wait for the other rank)
    done = gankit(tmp_path, "train", "--preset", "dcgan", "--epochs", "1", "--out", run, *TINY,
                  "--set", "eval_every=1", "--set", "eval_samples=64", procs=2)
    assert done.returncode == 0, done.stderr[-2000:]
    evals = MetricsFile(run / "metrics.jsonl").read("eval")
    assert [(e["epoch"], e["source"]) for e in evals] == [(1, "train")] and (run / "best.safetensors").is_file()
    assert gankit(tmp_path, "train", "--resume", run, "--epochs", "2", "--no-progress").returncode == 0
    done = gankit(tmp_path, "train", "--resume", run, "--epochs", "3", "--no-progress", procs=2)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(1, 25)) and checkpoint.load_checkpoint(run)["epoch"] == 3
    assert all(abs(r[k]) < 1e3 for r in rows for k in ("loss_D", "loss_G"))
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"epoch_00{i}.png" for i in (1, 2, 3)]
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 3  # one writer per launch, rank 0's
    assert gankit(tmp_path, "generate", run, "-n", "4", "-o", tmp_path / "g.png").returncode == 0


def test_a_batch_that_does_not_split_fails_every_rank_with_one_line(tmp_path):
    done = gankit(tmp_path, "train", "--preset", "simple-gan", "--epochs", "1", "--out", tmp_path / "run",
                  *TINY, "--set", "batch_size=33", procs=2)
    assert done.returncode != 0
    line = "gankit: error: batch_size 33 (the global batch) does not split evenly over 2 processes"
    assert done.stderr.count(line) == 2  # each rank's own line (the two may interleave on one pipe)
    assert "[rank0]: Traceback" not in done.stderr and "[rank1]: Traceback" not in done.stderr  # (torchrun's own
    # report of a failed child is its traceback, not gankit's)
    assert not (tmp_path / "run").exists()


def test_rows_split_a_global_draw():
    world = [World(rank, rank, 4) for rank in range(4)]
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    whole = torch.rand(8, 2, generator=g())
    parts = [Rows.of(w, 8).rand(2, generator=g()) for w in world]
    assert torch.equal(torch.cat(parts), whole) and Rows.of(world[1], 8).count == 2
    assert torch.equal(Rows(8).randn(3, generator=g()), torch.randn(8, 3, generator=g()))


def _worker_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes (its children with RANK in their environment)."""
    found = {}
    for pid in children(launcher):
        try:
            rank = [e[5:] for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if e.startswith(b"RANK=")]
        except OSError:
            continue
        if rank:
            found[int(rank[0])] = pid
    return found


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gankit",
           "train", "--preset", "simple-gan", "--epochs", "500", "--out", str(run), *TINY, "--set", "log_every=2"]
    launcher = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / layout.CHECKPOINT).exists() and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.05)
        workers = _worker_pids(launcher.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[1], signal.SIGINT)  # rank 1 alone hears it
        _, err = launcher.communicate(timeout=120)  # no rank is left waiting for the other
    finally:
        launcher.kill()
    # both ranks stop by the shared decision (exit 130 each, rank 0 saying what is on disk), none by an error
    assert err.count("gankit: interrupted; the checkpoint of epoch") == 2 and "is intact" in err, err[-3000:]
    # every rank waits for the others after the agreed stop, so rank 0 has printed its line before any rank exits;
    # torchrun ends the remaining workers once one has exited, so rank 0 reports 130 or, in that instant, SIGTERM
    exits = err.count("exitcode  : 130") + err.count("exitcode  : -15")
    assert err.count("exitcode  : 130") >= 1 and exits == 2, err[-3000:]
    assert "Connection closed by peer" not in err and "gankit: error" not in err, err[-3000:]
    saved = checkpoint.load_checkpoint(run)["epoch"]
    assert 1 <= saved < 500
    steps = [r["step"] for r in _rows(run)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= saved * 8
    done = gankit(tmp_path, "train", "--resume", run, "--epochs", str(saved + 1), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert checkpoint.load_checkpoint(run)["epoch"] == saved + 1


def test_interrupts_are_noted_once_and_a_later_second_ctrl_c_stops_at_once():
    import signal

    before = signal.getsignal(signal.SIGINT)
    with distributed.Interrupts(World(0, 0, 2)) as stops:
        assert not stops.requested
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # torchrun's forwarded copy of the same Ctrl-C
        assert stops.requested
        stops.first -= 10  # a Ctrl-C pressed again, later
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    with distributed.Interrupts(World()):  # one process: Ctrl-C is Python's own
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_a_folder_is_packed_once_by_rank_0_and_mapped_by_both(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(root / f"{i}.png")
    run = tmp_path / "run"
    done = gankit(tmp_path, "train", "--preset", "simple-gan", "--epochs", "1", "--out", run, "--data",
                  f"folder:{root}", *TINY, "--set", "subset=0", procs=2)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("gankit: packing 64 images of") == 1  # rank 0 packed; rank 1 waited, then mapped
    assert len(list((tmp_path / "cache" / "packs").iterdir())) == 1 and len(_rows(run)) == 2


# Mutation pass: the agreed stop's meeting point, deterministically (the Ctrl-C test above sees it only as a race).
SETTLE = """
import sys, time
from pathlib import Path
import torch.distributed as dist
from gankit.devices import World
from gankit.training.distributed import settle
rank, store, mark = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
if rank == 0:
    time.sleep(1.5)  # rank 0 still closing its files
    mark.write_text("closed")
settle(World(rank, rank, 2))
print(mark.exists())
dist.destroy_process_group()
"""


def test_settle_waits_until_every_rank_gets_there(tmp_path):
    distributed.settle(World())  # one process, no group: nothing to wait for
    argv = [str(tmp_path / "store"), str(tmp_path / "mark")]
    procs = [subprocess.Popen([sys.executable, "-c", SETTLE, str(rank), *argv], env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [out.strip() for out, _ in outs] == ["True", "True"]  # rank 1 left only after rank 0 had written


def test_an_agreed_stop_settles_and_stays_an_agreed_stop(tmp_path, monkeypatch):
    from gankit.training.launch import train

    from .conftest import tiny_config

    met = []
    monkeypatch.setattr(distributed, "any_rank", lambda world, flag, device: True)  # another rank heard Ctrl-C
    monkeypatch.setattr(distributed, "settle", met.append)
    with pytest.raises(KeyboardInterrupt) as stopped:  # (a plain one would end pytest's session)
        train(tiny_config(eval_every=0), tmp_path / "run", progress=False)
    assert type(stopped.value) is distributed.AgreedStop
    assert met == [World()] and "no checkpoint was written yet" in str(stopped.value)  # what a stop leaves


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _nodes(tmp_path: Path, *argv: str) -> list[subprocess.Popen]:
    """Two torchrun launches on this machine, one process each, meeting at a c10d rendezvous as two machines would
    (the README's several-machines command with HOST = 127.0.0.1)."""
    port = _free_port()
    return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
                              "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                              f"127.0.0.1:{port}", "--rdzv_conf", "join_timeout=60", "-m", "gankit", *map(str, argv)],
                             env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for node in (0, 1)]


def test_two_machines_train_as_one_process_and_the_run_resumes_on_one(tmp_path):
    argv = ["train", "--preset", "simple-gan", "--epochs", "1", *TINY, "--set", "fused=false"]
    one = gankit(tmp_path, *argv, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    nodes = _nodes(tmp_path, *argv, "--out", tmp_path / "two")
    outs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in b] == list(range(1, 9))  # one writer: the process of rank 0
    for x, y in zip(a, b):
        assert all(x[k] == pytest.approx(y[k], abs=1e-5) for k in ("loss_D", "loss_G", "D(x)", "D(G(z))"))
    s1, s2 = checkpoint.load_checkpoint(tmp_path / "one"), checkpoint.load_checkpoint(tmp_path / "two")
    _close(s1["generator"], s2["generator"], 1e-5)
    _close(s1["discriminator"], s2["discriminator"], 1e-5)
    done = gankit(tmp_path, "train", "--resume", tmp_path / "two", "--epochs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert checkpoint.load_checkpoint(tmp_path / "two")["epoch"] == 2
    assert [r["step"] for r in _rows(tmp_path / "two")] == list(range(1, 17))


def test_a_machine_that_dies_leaves_the_other_with_one_line_and_the_checkpoint_intact(tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    nodes = _nodes(tmp_path, "train", "--preset", "simple-gan", "--epochs", "500", "--out", run, *TINY,
                   "--set", "fused=false", "--set", "group_timeout=30")
    try:
        deadline = time.monotonic() + 120
        while not (run / layout.CHECKPOINT).exists() and time.monotonic() < deadline:
            assert all(node.poll() is None for node in nodes), nodes[0].stderr.read()[-2000:]
            time.sleep(0.05)
        workers = {node: _worker_pids(node.pid) for node in nodes}
        dying = next(node for node, ranks in workers.items() if 1 in ranks)  # the machine of rank 1 ...
        survivor = next(node for node in nodes if node is not dying)
        for pid in [*workers[dying].values(), dying.pid]:  # ... loses its power: launcher and worker at once
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        _, err = survivor.communicate(timeout=90)
        waited = time.monotonic() - started
    finally:
        for node in nodes:
            node.kill()
    assert survivor.returncode != 0 and waited < 60, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("gankit:")]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("gankit: error: another process of the training group stopped") and "intact" in lines[0]
    assert "[rank0]: Traceback" not in err and "RuntimeError" not in err, err[-3000:]  # (torchrun's own report of
    # a failed child, its ChildFailedError traceback, may follow)
    saved = checkpoint.load_checkpoint(run)["epoch"]
    assert f"the checkpoint of epoch {saved} is intact" in lines[0], lines[0]
    done = gankit(tmp_path, "train", "--resume", run, "--epochs", str(saved + 1), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert checkpoint.load_checkpoint(run)["epoch"] == saved + 1


def test_global_batchnorm_keeps_fp32_statistics_under_bf16_autocast(tmp_path):
    # (under torchrun with cpu_bf16 the activations reaching BatchNorm are bf16; its running statistics are fp32)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        norm = distributed.GlobalBatchNorm(3)
        x = torch.randn(8, 3, 4, 4).to(torch.bfloat16)
        y = norm(x)
        assert y.dtype == torch.bfloat16 and norm.running_mean.dtype == torch.float32
        expected = torch.nn.functional.batch_norm(x.float(), None, None, training=True)
        assert torch.allclose(y.float(), expected, atol=0.05)
        assert torch.allclose(norm.running_mean, 0.1 * x.float().mean((0, 2, 3)), atol=1e-3)
    finally:
        dist.destroy_process_group()
