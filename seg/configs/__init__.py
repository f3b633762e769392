"""Configs: the training config and its flags, the seed's hyperparameter file, search spaces."""
