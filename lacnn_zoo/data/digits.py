"""The embedded handwritten digits: scikit-learn's bundled copy (1797 scanned 8x8 digits, values 0..16), no
network needed."""



from lacnn_zoo.data.preprocessing import standardise
from lacnn_zoo.data.splits import DataSplits, check_fractions


def load_digits(*, seed=0, validation_fraction=0.1, test_fraction=0.2):
    """scikit-learn's handwritten digits as (N, 8, 8, 1) float32, stratified split with a fixed seed.

    Args:
        seed: the seed of the stratified splits.
        validation_fraction: the share of all images held out for validation.
        test_fraction: the share of all images held out for testing.

    Returns:
        `DataSplits` named 'digits' of NumPy `(x, y)` tuples (float32 images, int32 labels), 10 classes,
        `input_shape` (8, 8, 1): pixels scaled by 1/16, then standardised by the training images' mean and std.

    Raises:
        ValueError: a fraction is not in (0, 1), or the two do not leave at least 10% of the images for training.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    check_fractions(validation_fraction, test_fraction)
    digits = sk_load_digits()
    scale = 1.0 / 16.0
    x = digits.images.astype("float32")[..., None] * scale
    y = digits.target.astype("int32")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=validation_fraction / (1 - test_fraction), stratify=y_rest, random_state=seed
    )
    mean = x_train.mean(axis=(0, 1, 2))
    std = x_train.std(axis=(0, 1, 2))
    stats = {"mean": mean, "std": std}
    return DataSplits(
        name="digits",
        train=(standardise(x_train, stats), y_train),
        validation=(standardise(x_val, stats), y_val),
        test=(standardise(x_test, stats), y_test),
        input_shape=(8, 8, 1),
        num_classes=10,
        preprocessing={"scale": scale, "mean": mean.tolist(), "std": std.tolist(), "resize": None,
                       "channel_order": "RGB", "convention": "training images"},
    )
