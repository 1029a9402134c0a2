"""Benchmarks of Mitosis (``just bench``); each writes its figures for bench/REPORT.md."""
