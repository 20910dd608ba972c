"""The Gearman job server: a sans-IO dispatcher and the Trio layer that feeds it."""

from .config import ServerConfig
from .dispatcher import Dispatcher, ServerStats
from .serve import Server, serve_gearman

__all__ = ["Dispatcher", "Server", "ServerConfig", "ServerStats", "serve_gearman"]
