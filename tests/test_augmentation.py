"""Training augmentation: crop-flip, RandAugment, random erasing, MixUp and CutMix (Keras layers in tf.data)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from test_image_folder import few_per_class, write_digits_folder

from lacnn_zoo import cli
from lacnn_zoo.data import load_dataset, mix_batches
from lacnn_zoo.data.augmentation import augmenter
from lacnn_zoo.training import train
from lacnn_zoo.training.inference import evaluate

CLASSES = 8


def constant_batch(n=CLASSES, size=12):
    """Image k is the constant k (one class each), so a mixed image's mean is its label-weighted value."""
    images = np.broadcast_to(np.arange(n, dtype="float32")[:, None, None, None], (n, size, size, 3)).copy()
    return tf.data.Dataset.from_tensors((images, np.arange(n, dtype="int32")))


def mixed(mixup=0.0, cutmix=0.0, batches=40, seed=0):
    ds = mix_batches(constant_batch().repeat(batches), CLASSES, mixup=mixup, cutmix=cutmix, seed=seed)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def kinds(images):
    """Per image: 'mixup' (one blended value), 'cutmix' (two of the original values) or 'same'."""
    out = []
    for image in images:
        values = np.unique(np.round(image, 4))
        whole = np.all(np.isclose(values, np.round(values)))
        out.append("same" if len(values) == 1 and whole else "cutmix" if whole else "mixup")
    return out


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixed_labels_weigh_the_images_that_were_mixed(mode):
    batches = mixed(**{mode: 1.0})
    values = np.arange(CLASSES, dtype="float32")
    errors, weights = [], []
    for images, labels in batches:
        assert labels.shape == (CLASSES, CLASSES) and labels.dtype == np.float32
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
        assert ((labels > 1e-6).sum(axis=1) <= 2).all()  # two images at most
        for k in range(CLASSES):
            if mode == "mixup":  # the image is the label-weighted blend of the two constant images
                errors.append(abs(images[k].mean() - labels[k] @ values))
            else:  # each pixel is its own or the partner's; its own share is its label weight
                partner = [c for c in np.flatnonzero(labels[k] > 1e-6) if c != k]
                assert np.isin(np.round(images[k], 4), [k, *partner]).all()
                errors.append(abs(np.isclose(images[k], k).mean() - labels[k, k]))
        weights.extend(labels.max(axis=1))
    # CutMix: Keras weighs the labels by the continuous box, the pixels by the grid: up to ~2 pixels a side.
    assert max(errors) < (1e-4 if mode == "mixup" else 2.5 / 12), max(errors)
    assert np.mean(np.asarray(weights) < 0.9) > 0.3  # Beta(1, 1) weights: many images really are mixed
    assert set(kinds(np.concatenate([b[0] for b in batches]))) - {"same"} == {mode}


def test_mixup_and_cutmix_together_take_turns_by_batch():
    batch_kinds = []
    for images, _ in mixed(mixup=1.0, cutmix=1.0, batches=60):
        found = set(kinds(images)) - {"same"}
        assert len(found) <= 1, "one method per batch"
        batch_kinds.extend(found)
    share = batch_kinds.count("mixup") / len(batch_kinds)
    assert 0.25 < share < 0.75, share  # about half (60 batches: sd 0.065)


def test_randaugment_changes_pixel_values_where_crop_flip_only_moves_them():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 8, (16, 16, 3)) / 8.0, tf.float32)  # 8 levels: new values stand out
    allowed = set(np.round(np.unique(image.numpy()), 5)) | {0.0}  # crop pads with zeros

    def new_values(augment, n=40):
        fn = augmenter(augment, 0.0, 16, 16, 3, seed=1)
        out = [fn(image, 0)[0].numpy() for _ in range(n)]
        return np.mean([bool(set(np.round(np.unique(o), 5)) - allowed) for o in out]), out

    share_cf, crop_flipped = new_values("crop-flip")
    share_ra, _ = new_values("randaugment")
    assert share_cf == 0 and any(not np.array_equal(o, image.numpy()) for o in crop_flipped)
    assert share_ra > 0.5, share_ra
    assert augmenter("none", 0.0, 16, 16, 3, seed=1) is None


def test_random_erasing_erases_with_the_given_probability():
    image = tf.fill((16, 16, 1), 0.5)
    fn = augmenter("none", 0.5, 16, 16, 1, seed=3)
    erased = np.mean([not np.allclose(fn(image, 0)[0].numpy(), 0.5) for _ in range(200)])
    assert 0.35 < erased < 0.65, erased  # p = 0.5 exactly (Keras alone would draw p from [0, 0.5])
    always = augmenter("none", 1.0, 16, 16, 1, seed=3)
    assert all(not np.allclose(always(image, 0)[0].numpy(), 0.5) for _ in range(20))


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug") / "digits"
    images, labels = few_per_class(12)
    write_digits_folder(root, images, labels, size=16)
    return str(root)


def test_training_with_mixup_cutmix_and_randaugment_records_and_tests_on_true_labels(digit_folder, tmp_path):
    run = tmp_path / "run"
    result = train("plain_cnn_tiny", dataset=digit_folder, epochs=2, batch_size=32, mixup=0.2, cutmix=1.0,
                   augment="randaugment", random_erasing=0.25, label_smoothing=0.1, output_dir=str(run),
                   verbose=0, tensorboard=False)
    stored = json.load(open(run / "run.json"))
    assert (stored["mixup"], stored["cutmix"], stored["augment"], stored["random_erasing"]) == (
        0.2, 1.0, "randaugment", 0.25)
    # The test split is scored on its true labels: the same accuracy as evaluating best.keras independently.
    independent = evaluate(str(run))
    assert result.metrics["test_accuracy"] == pytest.approx(independent["top1"], abs=1e-6)
    plain = load_dataset(digit_folder, seed=0)
    assert independent["num_examples"] == sum(len(y) for _, y in plain.test)


def test_augmentation_options_are_refused_on_the_digits_and_checked(tmp_path, capsys):
    for argv, needle in [
        (["--mixup", "0.2"], "--mixup applies to TFDS"),
        (["--cutmix", "1"], "--cutmix applies to TFDS"),
        (["--random-erasing", "0.25"], "--random-erasing applies to TFDS"),
        (["--augment", "randaugment"], "--augment applies to TFDS"),
        (["--dataset", str(tmp_path), "--mixup", "-1"], "argument --mixup: takes a finite number >= 0"),
        (["--dataset", str(tmp_path), "--random-erasing", "1.5"], "argument --random-erasing: takes a number"),
    ]:
        try:
            rc = cli.main(["train", "--output-dir", str(tmp_path / "out"), *argv])
        except SystemExit as e:  # a value out of the option's range: the parser's one-line usage error
            rc = e.code
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and needle in err[0], (argv, err)
    with pytest.raises(ValueError, match="`augment` must be one of none, crop-flip, randaugment"):
        train("plain_cnn_tiny", dataset=str(tmp_path), augment="rotate", output_dir=str(tmp_path / "x"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_only_the_training_split_is_mixed(digit_folder):
    from lacnn_zoo.training.compiling import fit_data
    from lacnn_zoo.training.recipes import resolve_recipe

    data = load_dataset(digit_folder, batch_size=32)
    options = resolve_recipe(mixup=1.0)
    train_labels = np.concatenate([y for _, y in fit_data(data, "train", 32, options)["x"]])
    assert train_labels.shape[1] == 10 and np.mean(train_labels.max(axis=1) < 0.99) > 0.3
    for split in ("validation", "test"):
        one_hot = np.concatenate([y for _, y in fit_data(data, split, 32, options)["x"]])
        sparse = np.concatenate([y for _, y in getattr(data, split)])
        np.testing.assert_array_equal(one_hot, np.eye(10, dtype="float32")[sparse])
    assert fit_data(data, "train", 32, resolve_recipe())["x"] is data.train


def test_a_run_recorded_by_an_earlier_release_still_resumes(tmp_path):
    """run.json of earlier releases: augment True/False, no mixup/cutmix/random_erasing keys."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("simulated interruption")

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, output_dir=str(run), verbose=0, tensorboard=False, callbacks=[Crash()])
    stored = json.load(open(run / "run.json"))
    for key in ("mixup", "cutmix", "random_erasing"):
        del stored[key]
    stored["augment"] = False
    (run / "run.json").write_text(json.dumps(stored))
    assert cli.main(["train", "--resume", "--output-dir", str(run), "--verbose", "0"]) == 0
    assert (run / "metrics.json").exists()
