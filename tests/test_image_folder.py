"""`load_dataset(PATH)`: folders of image files built from scikit-learn's digits, written as PNG and JPEG."""

import os

import numpy as np
import pytest
from PIL import Image

from lacnn_zoo.data import load_dataset


def digits_uint8():
    """scikit-learn's digits as uint8 images (0..16 scaled to 0..255) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype("uint8"), digits.target.astype("int32")


def write_digits_folder(root, images, labels, *, size=8, formats=("png",), rgb_every=0):
    """Write `images` as root/<label>/<index>.<format>, upscaled to `size` (nearest); every `rgb_every`-th as RGB.

    Formats cycle through `formats`. Returns {path: (label, uint8 array as written before encoding)}.
    """
    written = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        picture = Image.fromarray(image, mode="L")
        if size != image.shape[0]:
            picture = picture.resize((size, size), Image.NEAREST)
        if rgb_every and i % rgb_every == 0:
            picture = picture.convert("RGB")
        path = os.path.join(folder, f"{i:04d}.{formats[i % len(formats)]}")
        picture.save(path, quality=95) if path.endswith("jpg") else picture.save(path)
        written[path] = (int(label), np.asarray(picture))
    return written


def few_per_class(n, seed=0):
    """n distinct digits of every class."""
    images, labels = digits_uint8()
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(10):
        index = rng.permutation(np.flatnonzero(labels == c))
        seen = set()
        for i in index:
            if images[i].tobytes() not in seen:
                seen.add(images[i].tobytes())
                keep.append(i)
            if len(seen) == n:
                break
    return images[keep], labels[keep]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    images, labels = few_per_class(10)
    return {
        # 100 images at 8x8, PNG and JPEG, every third one RGB: read as RGB.
        "mixed": (str(root / "mixed"), write_digits_folder(root / "mixed", images, labels, formats=("png", "jpg"),
                                                           rgb_every=3)),
        # The same images upscaled to 32x32, grayscale PNG only: read as one channel.
        "gray32": (str(root / "gray32"), write_digits_folder(root / "gray32", images, labels, size=32)),
    }


def split_arrays(data, split):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in getattr(data, split)])
    return np.concatenate(xs), np.concatenate(ys)


def raw_pixels(data, x):
    """Undo the recorded standardisation and scaling: back to 0..255."""
    p = data.preprocessing
    return (x * np.asarray(p["std"]) + np.asarray(p["mean"])) / p["scale"]


def test_folder_splits_are_stratified_disjoint_reproducible_and_labelled(folders):
    path, written = folders["mixed"]
    data = load_dataset(path, seed=0, batch_size=32)
    assert data.input_shape == (8, 8, 3) and data.num_classes == 10  # grayscale mixed with RGB: read as RGB
    assert data.preprocessing["class_names"] == [str(c) for c in range(10)]
    assert set(data.preprocessing) == {"scale", "mean", "std", "resize", "class_names", "channel_order", "convention"}
    assert data.preprocessing["convention"] == "training images" and data.preprocessing["channel_order"] == "RGB"
    assert data.preprocessing["resize"] is None
    splits = {s: split_arrays(data, s) for s in ("train", "validation", "test")}
    assert [len(splits[s][1]) for s in splits] == [70, 10, 20]
    assert np.bincount(splits["test"][1], minlength=10).tolist() == [2] * 10  # stratified
    # Standardised with the training images' statistics.
    x_train = splits["train"][0]
    assert np.allclose(x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    assert np.allclose(x_train.std(axis=(0, 1, 2)), 1, atol=1e-3)

    # Every loaded image is one of the written files (JPEG within its loss), under its folder's label,
    # and every file lands in exactly one split.
    sources = list(written.values())
    originals = np.stack([np.broadcast_to(a[..., None] if a.ndim == 2 else a, (8, 8, 3)) for _, a in sources])
    found = {}
    for split, (x, y) in splits.items():
        raw = raw_pixels(data, x)
        for image, label in zip(raw, y):
            distance = np.abs(originals.astype("float32") - image).mean(axis=(1, 2, 3))
            best = int(np.argmin(distance))
            assert distance[best] < 6 and sources[best][0] == label
            assert best not in found, f"image {best} is in both {found.get(best)} and {split}"
            found[best] = split
    assert len(found) == 100

    again = load_dataset(path, seed=0, batch_size=32)
    np.testing.assert_array_equal(split_arrays(again, "test")[0], splits["test"][0])
    other = load_dataset(path, seed=1, batch_size=32)
    assert not np.array_equal(split_arrays(other, "test")[0], splits["test"][0])


def test_grayscale_folder_matches_keras_loader_and_resizes(folders):
    import keras

    path, _ = folders["mixed"]
    gray_path, _ = folders["gray32"]
    data = load_dataset(gray_path, batch_size=32)
    assert data.input_shape == (32, 32, 1)
    resized = load_dataset(path, image_size=(16, 12), batch_size=32)
    assert resized.input_shape == (16, 12, 3) and resized.preprocessing["resize"] == [16, 12]
    # The pixels are those of Keras' own directory loader (same decoder, same bilinear resize).
    reference = keras.utils.image_dataset_from_directory(
        path, image_size=(16, 12), color_mode="rgb", shuffle=False, batch_size=None, verbose=False)
    reference = np.stack([np.asarray(x) for x, _ in reference])
    x, _ = split_arrays(resized, "test")
    for image in raw_pixels(resized, x):
        assert np.abs(reference - image).max(axis=(1, 2, 3)).min() < 1e-2


def test_split_subfolders_are_used_as_given(tmp_path):
    images, labels = few_per_class(3)
    for split, part in (("train", slice(0, None, 3)), ("val", slice(1, None, 3)), ("test", slice(2, None, 3))):
        write_digits_folder(tmp_path / split, images[part], labels[part])
    data = load_dataset(str(tmp_path), batch_size=32, validation_fraction=0.5)
    assert [len(split_arrays(data, s)[1]) for s in ("train", "validation", "test")] == [10, 10, 10]
    assert data.preprocessing["class_names"] == [str(c) for c in range(10)]
    for split, part in (("train", slice(0, None, 3)), ("test", slice(2, None, 3))):
        x, y = split_arrays(data, split)
        assert sorted(y.tolist()) == sorted(labels[part].tolist())


def test_images_of_different_sizes_need_image_size(tmp_path):
    images, labels = few_per_class(2)
    write_digits_folder(tmp_path / "a", images[:10], labels[:10])
    write_digits_folder(tmp_path / "a", images[10:], labels[10:], size=16)
    with pytest.raises(ValueError, match=r"differ in size.*8x8.*16x16.*image_size"):
        load_dataset(str(tmp_path / "a"))
    assert load_dataset(str(tmp_path / "a"), image_size=(16, 16), validation_fraction=0.25,
                        test_fraction=0.5).input_shape == (16, 16, 1)


def test_augment_crops_and_flips_training_images_only(folders):
    path, _ = folders["gray32"]
    plain = load_dataset(path, batch_size=100)
    augmented = load_dataset(path, batch_size=100, augment=True)
    x_plain, _ = split_arrays(plain, "train")
    x_aug, _ = split_arrays(augmented, "train")
    assert x_aug.shape == x_plain.shape
    # Shuffled the same way (same seed), so the images pair up; crop+flip moves most of them.
    moved = np.abs(x_aug - x_plain).max(axis=(1, 2, 3)) > 1e-3
    assert moved.mean() > 0.5
    np.testing.assert_array_equal(split_arrays(augmented, "test")[0], split_arrays(plain, "test")[0])


def _bad_folder(tmp_path, case):
    images, labels = few_per_class(3)
    root = tmp_path / case
    if case == "empty":
        root.mkdir()
    elif case == "single_class":
        write_digits_folder(root, images[labels == 0], labels[labels == 0])
    elif case == "class_without_images":
        write_digits_folder(root, images, labels)
        (root / "10").mkdir()
        (root / "10" / "notes.txt").write_text("no images here")
    elif case == "loose_files":
        write_digits_folder(tmp_path / "tmp", images, labels)
        root.mkdir()
        Image.fromarray(images[0]).save(root / "a.png")
    elif case == "corrupt":
        write_digits_folder(root, images, labels)
        (root / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return str(root)


@pytest.mark.parametrize("case,error,pattern", [
    ("empty", ValueError, r"`dataset` folder .* one subfolder of images per class"),
    ("single_class", ValueError, r"single class \('0'\).*at least two"),
    ("class_without_images", ValueError, r"class folder .*10' holds no images.*\.png"),
    ("loose_files", ValueError, r"holds 1 image files but no class subfolders"),
    ("corrupt", ValueError, r"cannot be decoded: '.*broken\.png'"),
])
def test_bad_folders_fail_with_one_clear_error(tmp_path, case, error, pattern):
    with pytest.raises(error, match=pattern):
        load_dataset(_bad_folder(tmp_path, case))


def test_bad_folder_arguments(tmp_path, folders):
    path, _ = folders["mixed"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        load_dataset(str(tmp_path / "file.png"))
    for size in [(0, 32), (-1, 8), (100_000, 100_000), (32,), "32", (32.5, 32), (True, 8)]:
        with pytest.raises(ValueError, match=r"`image_size` must be \(height, width\)"):
            load_dataset(path, image_size=size)
    with pytest.raises(ValueError, match="data_dir.*apply to TFDS"):
        load_dataset(path, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="validation_fraction"):
        load_dataset(path, validation_fraction=0.0)


def upscaled_digits(seed, size=32):
    """All digits upscaled to size x size by pixel repetition, in memory, split as `load_dataset(folder)` splits
    the folder `write_digits_folder` writes (same files in train/validation/test), as numpy `DataSplits`."""
    from sklearn.datasets import load_digits

    from lacnn_zoo.data import DataSplits
    from lacnn_zoo.data.splits import stratified_split

    digits = load_digits()
    k = size // 8
    x = np.repeat(np.repeat(digits.images.astype("float32")[..., None] / 16, k, axis=1), k, axis=2)
    y = digits.target.astype("int32")
    order = np.lexsort((np.arange(len(y)), y))  # the folder's order: class folders, then file names
    rest, test, y_rest, y_test = stratified_split(list(order), list(y[order]), 0.2, seed)
    train, val, y_train, y_val = stratified_split(rest, y_rest, 0.1 / 0.8, seed)
    mean, std = x[train].mean(axis=(0, 1, 2)), x[train].std(axis=(0, 1, 2))

    def part(index):
        return ((x[index] - mean) / std).astype("float32"), y[index]

    return DataSplits(name="digits", train=part(train), validation=part(val), test=part(test),
                      input_shape=(size, size, 1), num_classes=10,
                      preprocessing={"scale": 1 / 16, "mean": mean.tolist(), "std": std.tolist(), "resize": None})


def test_digits_folder_gives_the_in_memory_digits_and_trains(tmp_path):
    """Every digit as a 32x32 PNG: the folder's splits hold the in-memory digits' pixels, and train() runs on it.

    The accuracy comparison (30 epochs, 3 seeds) is `python tests/test_image_folder.py`: too slow for CI.
    """
    from lacnn_zoo import training

    images, labels = digits_uint8()
    write_digits_folder(tmp_path / "digits32", images, labels, size=32)
    folder = load_dataset(str(tmp_path / "digits32"), seed=0, batch_size=256)
    memory = upscaled_digits(0)
    for split in ("train", "validation", "test"):
        x, y = split_arrays(folder, split)
        x_ref, y_ref = getattr(memory, split)
        if split == "train":  # shuffled each epoch: compare as sets of (label, image)
            key = np.lexsort(x.reshape(len(x), -1).T[::-1])
            key_ref = np.lexsort(x_ref.reshape(len(x_ref), -1).T[::-1])
            x, y, x_ref, y_ref = x[key], y[key], x_ref[key_ref], y_ref[key_ref]
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_allclose(x, x_ref, atol=0.02)  # PNG stores 0..16 as 0..255, rounded
    result = training.train("plain_cnn_tiny", dataset=str(tmp_path / "digits32"), epochs=3, batch_size=64,
                            output_dir=tmp_path / "run", verbose=0, tensorboard=False)
    assert result.metrics["preprocessing"]["class_names"] == [str(c) for c in range(10)]
    assert result.metrics["input_shape"] == [32, 32, 1] and result.metrics["test_accuracy"] > 0.5


if __name__ == "__main__":
    # The full comparison: every digit written as a 32x32 PNG and trained from the folder, against the
    # in-memory digits upscaled to 32x32, same model, epochs, batch size and seeds.
    import argparse
    import tempfile
    import time

    from lacnn_zoo.training import loop as training

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="plain_cnn_tiny")
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    images, labels = digits_uint8()
    write_digits_folder(os.path.join(work, "digits32"), images, labels, size=32)
    real_loader = training.load_dataset
    results = {"folder": [], "memory": []}
    for seed in args.seeds:
        for kind in results:
            training.load_dataset = (real_loader if kind == "folder"
                                     else (lambda *a, seed=seed, **k: upscaled_digits(seed)))
            start = time.perf_counter()
            run = training.train(args.model, dataset=os.path.join(work, "digits32") if kind == "folder" else "digits",
                                 epochs=args.epochs, seed=seed, output_dir=os.path.join(work, f"{kind}-{seed}"),
                                 verbose=0, tensorboard=False)
            results[kind].append(run.metrics["test_accuracy"])
            print(f"seed {seed} {kind:>6}: test accuracy {run.metrics['test_accuracy']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    for kind, accs in results.items():
        print(f"{kind:>6}: mean test accuracy {np.mean(accs):.4f} over seeds {args.seeds} ({args.epochs} epochs)")
    difference = 100 * (np.mean(results["folder"]) - np.mean(results["memory"]))
    print(f"difference (folder - memory): {difference:+.2f} points")


def test_cli_trains_on_a_folder_by_relative_path_with_its_own_split(folders, tmp_path, monkeypatch, capsys):
    import json

    from lacnn_zoo import cli

    path, _ = folders["gray32"]
    monkeypatch.chdir(os.path.dirname(path))
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--dataset", os.path.basename(path), "--epochs", "1",
                     "--test-fraction", "0.3", "--batch-size", "32", "--verbose", "0"]) == 0
    run = os.path.join("runs", "plain_cnn_tiny-gray32-seed0")  # named after the folder, not its whole path
    stored = json.load(open(os.path.join(run, "run.json")))
    assert stored["dataset"] == path and stored["test_fraction"] == 0.3  # absolute: resumable from anywhere
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["preprocessing"]["class_names"] == [str(i) for i in range(10)]
    assert cli.main(["train", "--test-fraction", "0.3"]) == 2  # the digits have a fixed split
    assert "--test-fraction applies to TFDS" in capsys.readouterr().err
    # The class names travel to the deployment: the export manifest and the ONNX metadata.
    import onnx

    from export import export_model

    manifest = export_model(os.path.join(run, "best.keras"), tmp_path / "exported", format="onnx", batch_sizes=(1,))
    assert manifest["class_names"] == [str(i) for i in range(10)]
    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "exported" / "model.onnx")).metadata_props}
    assert props["class_names"] == manifest["class_names"] and props["preprocessing"] == metrics["preprocessing"]


def test_a_small_folder_is_warned_before_training_with_what_to_change(tmp_path, capsys):
    from lacnn_zoo import cli
    from lacnn_zoo.training.compiling import size_warning

    images, labels = few_per_class(20)
    keep = labels < 3  # 3 classes x 20 images, as a newcomer's first folder
    write_digits_folder(tmp_path / "three", images[keep], labels[keep])
    data = load_dataset(str(tmp_path / "three"), seed=0, batch_size=64)
    n_train, n_val = data.size("train"), data.size("validation")
    assert n_train + n_val + data.size("test") == 60
    for split in ("train", "validation", "test"):  # the recorded sizes are the splits' own
        batches = getattr(data, split).unbatch().batch(1000).as_numpy_iterator()
        assert data.size(split) == sum(len(y) for _, y in batches)
    line = size_warning(data, 64)
    assert f"{n_train} training images in batches of 64 (a batch holds at most the {n_train}) give 1 optimizer step " \
           "per epoch" in line
    assert f"the validation split has {n_val} images" in line and "--batch-size" in line
    assert size_warning(data, 4) == size_warning(data, 4)  # still warned for the validation split alone
    assert "optimizer step" not in size_warning(data, 4)
    from lacnn_zoo.data import DataSplits, load_digits

    assert size_warning(load_digits(seed=0), 64) is None  # the main job is not warned

    def sized(n_train, n_val):
        return DataSplits("x", None, None, None, (8, 8, 1), 3, {}, sizes={"train": n_train, "validation": n_val})

    assert size_warning(sized(640, 50), 64) is None  # 10 steps and 50 validation images: enough
    assert "validation split has 49" in size_warning(sized(640, 49), 64)
    assert "give 9 optimizer steps" in size_warning(sized(576, 50), 64)
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--dataset", str(tmp_path / "three"), "--epochs", "1",
                     "--output-dir", str(tmp_path / "run"), "--verbose", "2"]) == 0
    err = capsys.readouterr().err
    assert line in err


def test_the_small_data_warning_suggests_the_batch_size_of_its_rule():
    """The suggestion is the largest power of two that gives at least 10 full batches (1 when none does), worked
    out here by hand for each case; a split that is only too small for validation gets no batch-size advice."""
    import re

    from lacnn_zoo.data import DataSplits
    from lacnn_zoo.training.compiling import size_warning

    def sized(n_train, n_val):
        return DataSplits("x", None, None, None, (8, 8, 1), 3, {}, sizes={"train": n_train, "validation": n_val})

    # (training images, batch size) -> suggestion: e.g. 576 // 32 = 18 full batches but 576 // 64 = 9.
    by_hand = {(576, 64): 32, (95, 64): 8, (159, 32): 8, (160, 32): 16, (1000, 128): 64, (36, 4): 2, (5, 64): 1}
    for (n_train, batch_size), expected in by_hand.items():
        line = size_warning(sized(n_train, 50), batch_size)
        assert re.findall(r"--batch-size \(e\.g\. (\d+)\)", line) == [str(expected)], (n_train, batch_size, line)
    line = size_warning(sized(6400, 49), 64)  # 100 steps: only the validation split is small
    assert "validation split has 49" in line and "--validation-fraction" in line
    assert "--batch-size" not in line, line  # not "a smaller --batch-size (e.g. 512)" than 64
    assert "has 40 images (one image moves validation accuracy by 2.5 points)" in size_warning(sized(6400, 40), 64)


def test_a_batch_larger_than_the_training_split_is_said_not_silently_capped():
    from lacnn_zoo.data import DataSplits
    from lacnn_zoo.training.compiling import size_warning

    split = DataSplits("x", None, None, None, (8, 8, 1), 3, {}, sizes={"train": 1149, "validation": 200})
    line = size_warning(split, 10**9)
    assert "batches of 1000000000 (a batch holds at most the 1149) give 1 optimizer step per epoch" in line
    assert "at most" not in size_warning(split, 1024)  # 2 steps: a real batch of 1024, nothing capped


def test_write_digits_folder_writes_each_scan_scaled_and_resized_under_its_label(tmp_path):
    from lacnn_zoo.data import write_digits_folder as write

    images, labels = digits_uint8()
    assert write(tmp_path / "a", size=16, per_class=3, channels=3, seed=1) == 30
    files = sorted((tmp_path / "a").glob("*/*.png"))
    assert len(files) == 30 and sorted({f.parent.name for f in files}) == [str(c) for c in range(10)]
    for f in files:
        index = int(f.stem)
        assert labels[index] == int(f.parent.name)
        expected = np.repeat(np.kron(images[index], np.ones((2, 2), "uint8"))[..., None], 3, axis=-1)
        np.testing.assert_array_equal(np.asarray(Image.open(f)), expected)
    write(tmp_path / "b", size=8, per_class=3, seed=1)
    write(tmp_path / "c", size=8, per_class=3, seed=2)
    names = {d: sorted(p.name for p in (tmp_path / d).glob("*/*.png")) for d in "abc"}
    assert names["a"] == names["b"] != names["c"]
    gray = np.asarray(Image.open(next((tmp_path / "b").glob("*/*.png"))))
    assert gray.shape == (8, 8)


def test_write_digits_folder_replaces_nothing_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    from lacnn_zoo.data import write_digits_folder as write

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "file").write_text("keep")
    for root in ("mine", "file"):
        with pytest.raises(ValueError, match=f"`root` '.*{root}' already exists and is not an empty folder"):
            write(tmp_path / root, per_class=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and (tmp_path / "file").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    assert write(tmp_path / "empty", size=8, per_class=1) == 10
    with pytest.raises(ValueError, match=r"`per_class` must be an integer from 1 to 174 .* received 175"):
        write(tmp_path / "big", per_class=175)
    saved, calls = Image.Image.save, []

    def fail_on_the_fifth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk trouble")
        return saved(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fail_on_the_fifth)
    with pytest.raises(OSError, match="disk trouble"):
        write(tmp_path / "cut", size=8, per_class=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "mine"]  # no 'cut', no temporary


def test_digits_folder_command_writes_a_folder_the_trainer_reads(tmp_path, capsys):
    from lacnn_zoo import cli

    assert cli.main(["digits-folder", str(tmp_path / "photos"), "--size", "8", "--per-class", "4"]) == 0
    assert "40 images of the embedded digits written to" in capsys.readouterr().out
    assert cli.main(["digits-folder", str(tmp_path / "photos"), "--per-class", "1"]) == 2
    assert capsys.readouterr().err.strip().startswith("lacnn-zoo: error: DIR ")
    splits = load_dataset(str(tmp_path / "photos"), seed=0, test_fraction=0.25, validation_fraction=0.25)
    assert splits.num_classes == 10 and splits.input_shape == (8, 8, 1)


@pytest.mark.parametrize("per_class", [0, -1])
def test_write_digits_folder_needs_at_least_one_image_a_class(tmp_path, per_class):
    from lacnn_zoo.data import write_digits_folder as write

    with pytest.raises(ValueError, match=rf"`per_class` must be an integer from 1 to .* received {per_class}"):
        write(tmp_path / "out", per_class=per_class)
    assert os.listdir(tmp_path) == []  # nothing written, not even empty class folders


def test_write_digits_folder_never_writes_through_a_symbolic_link(tmp_path):
    from lacnn_zoo.data import write_digits_folder as write

    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(ValueError, match="`root` '.*link' already exists and is not an empty folder"):
        write(tmp_path / "link", size=8, per_class=1)
    assert os.path.islink(tmp_path / "link") and os.readlink(tmp_path / "link") == str(tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == [] and sorted(os.listdir(tmp_path)) == ["empty", "link"]


def test_train_and_test_folders_without_val_check_the_validation_fraction(tmp_path):
    """The validation split is carved from train/ then, so `validation_fraction` applies and is checked."""
    images, labels = few_per_class(2)
    write_digits_folder(tmp_path / "train", images, labels)
    write_digits_folder(tmp_path / "test", images, labels)
    with pytest.raises(ValueError, match=r"`validation_fraction` must be a number in \[0, 1\)"):
        load_dataset(str(tmp_path), validation_fraction=1.5)


def test_hidden_files_are_not_images():
    from lacnn_zoo.data import is_image_file

    assert is_image_file("a.png") and is_image_file("photos/B.JPG")
    for name in (".a.png", "._photo.jpg", "photos/.hidden.PNG"):
        assert not is_image_file(name), name


def test_a_hidden_file_in_a_class_folder_is_not_loaded(tmp_path):
    from lacnn_zoo.data import list_images

    images, labels = few_per_class(4)
    write_digits_folder(tmp_path, images, labels)
    (tmp_path / "3" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # not a PNG
    assert not any(os.path.basename(f).startswith(".") for f in list_images(str(tmp_path)))
    data = load_dataset(str(tmp_path), validation_fraction=0.25, test_fraction=0.25)
    assert sum(len(split_arrays(data, s)[1]) for s in ("train", "validation", "test")) == 40


def test_a_test_class_that_train_lacks_is_one_clear_error(tmp_path):
    images, labels = few_per_class(2)
    write_digits_folder(tmp_path / "train", images, labels)
    write_digits_folder(tmp_path / "test", images, labels)
    (tmp_path / "test" / "extra").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "test" / "extra" / "a.png")
    with pytest.raises(ValueError, match=r"test folder .* has class folders that train/ lacks: \['extra'\]"):
        load_dataset(str(tmp_path))
