"""The Gearman job server: a sans-IO dispatcher and the Trio layer that feeds it."""

from .config import ServerConfig
from .dispatcher import Dispatcher
from .serve import Server, serve_gearman
from .stats import ServerStats

__all__ = ["Dispatcher", "Server", "ServerConfig", "ServerStats", "serve_gearman"]
