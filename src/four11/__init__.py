"""four11: secure distribution of login and configuration files to cluster nodes."""

__version__ = "0.1.0"
