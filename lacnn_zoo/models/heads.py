"""The classifier head shared by every family (keras.applications conventions)."""

import keras
from keras import layers


def check_head_arguments(input_shape, include_top, pooling):
    if include_top and pooling is None and (input_shape[0] is None or input_shape[1] is None):
        raise ValueError(
            "`pooling=None` with `include_top=True` flattens the feature map, which needs a fixed input "
            f"height and width; received input_shape={tuple(input_shape)!r}. Use pooling='avg' or 'max'."
        )


def classifier_head(features, *, num_classes, include_top, pooling, classifier_activation):
    """Pool (or flatten) a feature map and add the classifier.

    With `include_top=False` the pooled vector is returned, or the map itself
    when `pooling=None`.  The classifier Dense layer is named `logits`; an
    activation, when asked for, is a separate layer named `probabilities`.
    """
    x = features
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif include_top:
        x = layers.Flatten(name="flatten")(x)
    if not include_top:
        return x
    return classifier(x, num_classes=num_classes, classifier_activation=classifier_activation)


def classifier(x, *, num_classes, classifier_activation):
    # Logits (and probabilities) stay float32 under a mixed dtype policy, as Keras' mixed precision guide advises.
    x = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    if classifier_activation is not None:
        x = layers.Activation(classifier_activation, name="probabilities", dtype="float32")(x)
    return x


def model_input(input_shape):
    return keras.Input(shape=tuple(input_shape), name="images")
