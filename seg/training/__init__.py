"""The train stage and how it runs on several workers."""
