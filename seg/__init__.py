"""Segmentation: the U-Net, its input pipeline and training."""
