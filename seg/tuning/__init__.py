"""The tune stage: a hyperparameter search whose every trial is a train stage."""
