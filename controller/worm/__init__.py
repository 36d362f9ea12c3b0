"""Harmless emulated worm for containment experiments (runs on Mininet hosts)."""
