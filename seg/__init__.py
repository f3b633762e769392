"""Segmentation: the stage binaries (*_main.py), what they share (launch, stages), and one
folder per role: configs, model, training, evaluation, serve, tuning, drawing."""
