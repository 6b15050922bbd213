"""Shared test set-up. Because this folder holds a conftest.py and no __init__.py, pytest puts it on
sys.path: test modules in every sub-folder import the shared `helpers` and `strategies` by name.
Lessons and training runs carry the `slow` marker (`pytest -m "not slow"` skips them; CI runs all)."""
