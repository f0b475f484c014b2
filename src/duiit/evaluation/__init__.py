"""Metrics, image-quality scores, statistics and the experiment runner."""
