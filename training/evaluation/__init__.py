"""Judging a model: metrics, scoring through the service's path, the report's files, the shortcut guard."""
