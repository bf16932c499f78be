"""``study report`` and ``study ui``: tables, figures and an HTML dashboard from a study's MLflow runs.

``make_report(study_dir)`` does the work; ``study.reports.cli`` holds the CLI entry points.
"""
