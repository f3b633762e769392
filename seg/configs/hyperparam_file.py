"""The seed's hyperparameter file: a JSON object of these keys, which its tuner wrote and
//seg:train --hyperparam_fn_path reads (seg.configs.config), and which //seg:tune writes."""

KEYS = ("batch_size", "epochs", "iterations", "learning_rate", "model_arch", "steps_per_epoch")
# What a search can set and a tune output holds: all but iterations, which training does not use.
SEARCHABLE = tuple(key for key in KEYS if key != "iterations")
