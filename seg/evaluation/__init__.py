"""The calibrate and evaluate stages."""
