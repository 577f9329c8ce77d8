import pytest


@pytest.fixture(autouse=True)
def _models_single_thread(single_thread):
    """Every model test runs single-threaded (see ``single_thread`` in tests/conftest.py)."""
    yield
