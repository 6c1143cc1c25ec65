"""Speed of lensscore measured side by side: ``python -m bench`` (see bench/run.py)."""
