"""The search's plain tables, free of Keras and Keras Tuner, so parsers (`python -m tuning --help`,
`lacnn-zoo tune --help`) build without loading TensorFlow; `tuning.hypermodel` and `tuning.search` re-export them."""

# The candidates the search chooses among (its `mechanism` hyperparameter): name -> (registered model it starts
# from, fixed knobs). Not `lacnn_zoo.layers.layer_attention.MECHANISMS`, the four layer-attention classes.
CANDIDATES = {
    "plain": ("plain_cnn_tiny", {}),
    "resnet_add": ("resnet8", {"mixing": "add"}),
    "resnet_beta": ("resnet8", {"mixing": "beta"}),
    "resnet_projection": ("resnet8", {"mixing": "projection"}),
    "attention_augmented": ("aa_resnet8", {}),
    "innate_static": ("lacnn_innate_static_tiny", {}),
    "static_vector": ("lacnn_static_vector_tiny", {}),
    "self_attention": ("lacnn_self_attention_tiny", {}),
    "dynamic_recurrent": ("lacnn_dynamic_recurrent_tiny", {}),
}
RESIDUAL = ("resnet_add", "resnet_beta", "resnet_projection", "attention_augmented")
# The layer-attended candidates are those whose model is layer-attended; their knobs are their mechanisms' own
# (`tuning.hypermodel.attention_mechanism`).
OBJECTIVES = ("val_accuracy", "val_loss", "accuracy", "loss")
TUNERS = ("random", "hyperband", "bayesian")
