"""miakit: membership inference audits of machine-learning models."""

from miakit.errors import MiakitError

__version__ = "0.1.0"
__all__ = ["MiakitError", "__version__"]
