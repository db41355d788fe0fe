import math

import pytest
import torch

from gankit import GankitError
from gankit.data.batches import to_float
from gankit.data.loading import load
from gankit.quality import classifier, metrics
from gankit.quality import evaluator as ev


@pytest.fixture(scope="module")
def digits():
    return load("mnist5k", subset=1000)


@pytest.fixture(scope="module")
def trained(digits):
    model = classifier.train_classifier(digits, epochs=3, progress=False)
    return model, ev.reference_for(digits, model)


def test_classifier_learns_digits_and_round_trips(tmp_path, digits, trained):
    model, _ = trained
    assert model.spec.val_accuracy > 0.8  # 800 training digits, 3 epochs
    assert len(model.spec.history) == 3 and model.spec.classes == [str(i) for i in range(10)]
    path = classifier.save_classifier(model, tmp_path / "c.safetensors")
    again = classifier.load_classifier(path)
    feats, logits = model.embed(digits.images[:50])
    feats2, logits2 = again.embed(digits.images[:50])
    assert feats.shape == (50, classifier.FEATURES) and logits.shape == (50, 10)
    assert torch.allclose(logits, logits2, atol=1e-4)  # channels_last vs contiguous kernels


def test_real_vs_real_is_near_the_floor_and_noise_is_far(trained):
    model, ref = trained
    floor = metrics.floor(ref, 500)
    assert floor["precision"] > 0.6 and floor["recall"] > 0.6
    assert floor["classes_covered"] == 10 and floor["class_kl"] < 0.05
    assert 0.8 < floor["spread"] < 1.2
    noise = torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    far = metrics.measure(lambda n: noise[:n], model, ref, 500)
    assert far["fd"] > 10 * floor["fd"]
    assert far["kid"] > 10 * max(floor["kid"], 1e-3)
    assert far["precision"] < 0.05


def test_reference_computes_its_manifold_radii_once(trained):
    _, ref = trained
    radii = ref.knn_radii(metrics.PR_K)
    assert ref.knn_radii(metrics.PR_K) is radii
    assert torch.equal(radii, metrics.kth_radius(ref.features_a, metrics.PR_K))
    fake = ref.features_b[:300]
    assert metrics.compare(ref, fake, None, kid_subsets=2)["precision"] == round(
        metrics.precision_recall(ref.features_a, fake)[0], 5)


def test_one_repeated_digit_has_coverage_one_and_no_recall(digits, trained):
    model, ref = trained
    seven = to_float(digits.images[digits.labels == 7][:1])
    values = metrics.measure(lambda n: seven.expand(n, -1, -1, -1), model, ref, 500)
    assert values["classes_covered"] == 1
    assert values["recall"] < 0.05
    assert values["class_kl"] == pytest.approx(math.log(10), abs=0.1)  # all mass on one of 10 equal classes
    assert values["spread"] < 0.01


def test_precision_recall_on_points():
    real = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    inside = real[:200] + 0.01
    far = real[:200] + 100.0
    assert metrics.precision_recall(real, inside)[0] == 1.0
    p, r = metrics.precision_recall(real, far)
    assert p == 0.0 and r == 0.0
    # a fake set covering only half of the data: full precision, recall near one half
    half = real[real[:, 0] > 0]
    p, r = metrics.precision_recall(real, half)
    assert p == 1.0 and 0.3 < r < 0.75


def test_frechet_distance_of_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 3, generator=g), torch.randn(4000, 3, generator=g)
    assert metrics.frechet_distance(a, b) < 0.02
    assert metrics.frechet_distance(a, b + 2.0) == pytest.approx(12.0, rel=0.05)  # |mu diff|^2 = 3 * 4


def test_evaluator_and_reference_are_cached(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path))
    small = load("mnist5k", subset=300)
    model = ev.evaluator_for(small, progress=False, epochs=1)
    cached = list((tmp_path / "evaluators").glob("*.safetensors"))
    assert len(cached) == 1 and "mnist5k" in cached[0].name
    ref = ev.reference_for(small, model)
    assert len(list((tmp_path / "reference").glob("*.safetensors"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(classifier, "train_classifier", no_training)
    monkeypatch.setattr(classifier.Classifier, "embed", no_training)
    again = ev.evaluator_for(small, progress=False)
    assert torch.equal(again.head[1].weight, model.head[1].weight)
    ref2 = ev.reference_for(small, again)
    assert torch.equal(ref.features_a, ref2.features_a) and torch.equal(ref.preds_b, ref2.preds_b)
    # other data -> another key
    monkeypatch.undo()
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path))
    ev.evaluator_for(load("mnist5k", subset=200), progress=False, epochs=1)
    assert len(list((tmp_path / "evaluators").glob("*.safetensors"))) == 2


def test_classifier_never_trains_on_held_out_images(monkeypatch):
    data = load("mnist5k", subset=200)
    data.images = data.images.clone()
    held = torch.arange(0, 200, 3)
    data.images[held] = 255  # marked: all-white images exist only at the held-out indices
    seen = []
    real_augment = classifier.batches.augment

    def spy(x, *args):
        seen.append(bool((x.flatten(1) == 1).all(1).any()))
        return real_augment(x, *args)

    monkeypatch.setattr(classifier.batches, "augment", spy)
    classifier.train_classifier(data, epochs=2, batch_size=32, progress=False, val_idx=held)
    assert len(seen) == 2 * (200 - len(held)) // 32 and not any(seen)


def test_evaluator_holds_out_the_floor_half(tmp_path, monkeypatch):
    """The floor compares half B with half A, so the evaluator must not have fitted half B's images."""
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path))
    small = load("mnist5k", subset=300)
    calls = []
    real_train = classifier.train_classifier
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: calls.append(k) or real_train(*a, **k))
    ev.evaluator_for(small, progress=False, epochs=1)
    a, b = ev.halves(small)
    assert len(a) == len(b) == 150 and not set(a.tolist()) & set(b.tolist())
    assert torch.equal(calls[0]["val_idx"], b)


def test_too_few_images_to_measure_is_one_clear_error(tmp_path, monkeypatch, trained):
    model, _ = trained
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path))
    with pytest.raises(GankitError, match="holds 7 images: too few to measure against"):
        ev.reference_for(load("mnist5k", subset=7), model)
    ref = ev.reference_for(load("mnist5k", subset=8), model)  # 4 per half: each has a 3rd neighbour
    assert len(ref.features_a) == len(ref.features_b) == 4
    floor = metrics.floor(ref, 4)
    precision, recall = metrics.precision_recall(ref.features_a, ref.features_b)
    assert (floor["precision"], floor["recall"]) == (round(precision, 5), round(recall, 5))
    assert {floor["precision"] * 4, floor["recall"] * 4} <= {0.0, 1.0, 2.0, 3.0, 4.0}  # counts of 4 images
    assert floor["precision"] >= 0.5  # half B's digits fall in the real manifold of half A's


def test_damaged_cached_evaluator_is_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path))
    small = load("mnist5k", subset=200)
    ev.evaluator_for(small, progress=False, epochs=1)
    path = next((tmp_path / "evaluators").glob("*.safetensors"))
    path.write_bytes(b"garbage")
    model = ev.evaluator_for(small, progress=False, epochs=1)
    assert classifier.load_classifier(path).spec.data_hash == model.spec.data_hash


def test_classifier_refuses_unlabeled_data():
    data = load("mnist5k", subset=100)
    data.labels = data.classes = None
    with pytest.raises(GankitError, match="no labels"):
        classifier.train_classifier(data)


def test_explicit_evaluator_must_match_the_data(tmp_path, trained):
    model, _ = trained
    path = classifier.save_classifier(model, tmp_path / "c.safetensors")
    rgb = load("mnist5k", subset=100, channels=3)
    with pytest.raises(GankitError, match="takes 1x28x28"):
        ev.evaluator_for(rgb, path)
    with pytest.raises(GankitError, match="evaluator not found"):
        ev.evaluator_for(rgb, tmp_path / "nope.safetensors")


def test_frechet_distance_sees_covariances():
    # equal means, covariances I and diag(4, 1, 1/4): FD = tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (1 - s_i)^2
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    assert metrics.frechet_distance(a, b) == pytest.approx(1.0 + 0.0 + 0.25, rel=0.05)
    assert metrics.frechet_distance(a, a * 3) == pytest.approx(3 * (3 - 1) ** 2, rel=0.05)


def test_floor_is_half_b_against_half_a():
    # half B is drawn apart from half A, so a floor of A against itself (FD 0, precision 1) cannot pass
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 4, generator=g)
    b = torch.randn(200, 4, generator=g) * 1.2 + 0.4
    preds_b = torch.randint(0, 3, (200,), generator=g)
    ref = metrics.Reference(a, b, preds_b, torch.tensor([0.5, 0.3, 0.2]))
    floor = metrics.floor(ref, 150, kid_subsets=5)
    # the floor's copy test leaves each of B's images out of the pool it is tested against (they are in it)
    assert floor == metrics.compare(ref, b[:150], preds_b[:150], kid_subsets=5, skip_from=len(a))
    assert metrics.compare(ref, b[:150], preds_b[:150], kid_subsets=5)["copy_rate"] == 1.0  # not left out: copies
    assert floor["fd"] == pytest.approx(metrics.frechet_distance(a, b[:150]), rel=1e-4)
    assert floor["fd"] > 0.5 and floor["precision"] < 1.0
    assert floor["class_histogram"] == [round(v, 4) for v in
                                        (torch.bincount(preds_b[:150], minlength=3).double() / 150).tolist()]


def test_precision_recall_of_a_hand_made_point_set():
    # reals 0..9 on a line: the 3rd-neighbour radius is 3 at the ends and 2 inside
    real = torch.arange(10, dtype=torch.float64).view(-1, 1)
    assert metrics.kth_radius(real, 3).tolist() == [3.0] + [2.0] * 8 + [3.0]
    # fakes -3.5 (3.5 from 0: outside), 0.5 (inside), 10.5 (1.5 from 9, inside its radius 3), 20 (outside);
    # their own radii (3rd neighbour among the 4) are 23.5, 19.5, 14 and 23.5: every real is inside
    fake = torch.tensor([[-3.5], [0.5], [10.5], [20.0]], dtype=torch.float64)
    assert metrics.precision_recall(real, fake) == (0.5, 1.0)
    # fakes 0..3: all on real points; their radii 3, 2, 2, 3 cover [-3, 6]: the reals 0..6 of 10
    assert metrics.precision_recall(real, real[:4].clone()) == (1.0, 0.7)
