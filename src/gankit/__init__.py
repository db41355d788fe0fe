"""gankit: train, resume, sample and inspect GANs on images."""

from .errors import GankitError

__version__ = "0.1.0"
__all__ = ["GankitError", "__version__"]
