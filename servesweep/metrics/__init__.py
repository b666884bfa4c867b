"""Metric math (summary) and server-side scraping (prometheus)."""
