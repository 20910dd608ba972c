"""trigear: a Gearman job server, client and worker library on Trio."""

__version__ = "0.1.0"
