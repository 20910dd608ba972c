"""The Gearman job server: a sans-IO dispatcher and the Trio layer that feeds it."""

from .config import ServerConfig
from .dispatcher import Dispatcher
from .serve import Server, serve_gearman
from .stats import ServerStatistics, ServerStats

__all__ = [
    "Dispatcher",
    "Server",
    "ServerConfig",
    "ServerStatistics",
    "ServerStats",
    "serve_gearman",
]
