"""Mininet side: builds and removes emulated networks (runs in its own process, never with Ryu)."""
