"""Experiment folder -> results.md, results.csv, figures/ and report.html."""

from duiit.report.build import build_report

__all__ = ["build_report"]
