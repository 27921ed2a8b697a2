"""Synthetic SmallThinker GGUF files: the real architecture, shapes and tensor types with
random weights, for tests and benchmarks on machines that cannot download the models."""

from engine.synthetic.shapes import SHAPES, SyntheticShape, get_shape
from engine.synthetic.writer import Recipe, RouterSkew, plan_tensors, write_synthetic_model

__all__ = ["SHAPES", "Recipe", "RouterSkew", "SyntheticShape", "get_shape", "plan_tensors", "write_synthetic_model"]
