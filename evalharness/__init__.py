"""evalharness: evaluate multi-token-prediction code models on HumanEval and MBPP."""
__version__ = "0.1.0"
