"""The U-Net, the factory that makes and loads it, its metrics and calibrated temperature."""
