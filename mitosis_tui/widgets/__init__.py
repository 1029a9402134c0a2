"""Widgets, one per module, grouped by the screen region they fill."""
