"""Canonical motion type, skeleton, conversions and the built-in motion library."""
from .motion import Motion, MotionError  # noqa: F401
