"""The deck's models in PyTorch: the oracle minicnn is tested against, and the GPU path.

Names mirror ``minicnn`` name for name (``layer1.0.weight`` is the same parameter in both).
"""
