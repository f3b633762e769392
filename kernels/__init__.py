"""Kernels whose summation order reproseg fixes, not the CPU: fixed_order.py and the C++ ops
it loads (docs/determinism.md, "The fixed-order kernels")."""
