"""metrics.jsonl has one owner (gankit.run.metrics_log.MetricsFile): reading, appending, purging, torn last lines."""

from __future__ import annotations

import json

import pytest

from gankit import GankitError
from gankit.quality.evaluate import evaluate
from gankit.report.plots import read_metrics
from gankit.run.metrics_log import MetricsFile


def _write(path, *records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_reads_records_by_kind(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, {"kind": "train", "step": 1}, {"kind": "epoch", "step": 1}, {"kind": "train", "step": 2})
    log = MetricsFile(path)
    assert [r["step"] for r in log.read("train")] == [1, 2]
    assert [r["kind"] for r in log.read()] == ["train", "epoch", "train"]
    assert MetricsFile(tmp_path / "none.jsonl").read() == []


def test_a_torn_last_line_is_dropped_with_a_note(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    _write(path, {"kind": "train", "step": 1}, {"kind": "train", "step": 2}, tail='{"kind": "train", "st')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert "last line is incomplete" in capsys.readouterr().err
    # the next append cuts the torn line off first, so the new record is whole and on a line of its own
    MetricsFile(path).append({"kind": "eval", "step": 2, "fd": 1.5})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["train", "train", "eval"]


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, {"kind": "train", "step": 1}, tail=json.dumps({"kind": "train", "step": 2}))
    log = MetricsFile(path)
    assert [r["step"] for r in log.read()] == [1, 2]
    log.append({"kind": "train", "step": 3})
    assert [r["step"] for r in log.read()] == [1, 2, 3]


@pytest.mark.parametrize("bad", ["not json at all", "[1, 2, 3]", '{"kind": "train", "st'])
def test_damage_before_the_last_line_is_one_clear_error(tmp_path, bad):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"kind": "train", "step": 1}) + "\n" + bad + "\n" +
                    json.dumps({"kind": "train", "step": 2}) + "\n")
    with pytest.raises(GankitError, match="line 2 is not a JSON record"):
        MetricsFile(path).read()


def test_purge_keeps_what_was_logged_up_to_a_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, *({"kind": "train", "step": s} for s in range(1, 6)), {"kind": "eval", "step": 3},
           {"kind": "health", "step": 5}, tail='{"kind": "tr')
    MetricsFile(path).purge_after(3)
    assert [(r["kind"], r["step"]) for r in MetricsFile(path).read()] == [
        ("train", 1), ("train", 2), ("train", 3), ("eval", 3)]
    assert path.read_text().endswith("\n")


def test_evaluate_appends_after_a_torn_line_without_merging(mlp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    path = run / "metrics.jsonl"
    before = MetricsFile(path).read()
    with path.open("a") as fh:
        fh.write('{"kind": "train", "epoch": 1, "st')  # a crash in the middle of a write
    evaluate(run, n=50, progress=False)
    after = MetricsFile(path).read()
    assert after[:-1] == before and after[-1]["source"] == "evaluate" and after[-1]["n"] == 50
