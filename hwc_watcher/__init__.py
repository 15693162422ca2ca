"""hwc-watcher: the school side of Handle with Care, unattended and keeping nothing."""

__version__ = "0.1.0"

__all__ = ["__version__"]
