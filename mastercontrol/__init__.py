"""Master Control: a process supervisor and fleet manager for small Linux boards."""

__version__ = "0.1.0"
