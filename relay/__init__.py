"""ccguard: an SMTP relay that stops bulk-CC leaks."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("ccguard")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"
