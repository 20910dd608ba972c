"""trigear: a Gearman job server, client and worker library on Trio."""

from .protocol.packets import Priority

__version__ = "0.1.0"

__all__ = ["Priority", "__version__"]
