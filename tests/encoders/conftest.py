import pytest


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch):
    """Each test gets its own on-disk feature cache and an empty in-memory one."""
    from mmlab import features

    monkeypatch.setenv("MMLAB_CACHE", str(tmp_path / "cache"))
    features.clear_memory()
    yield tmp_path / "cache" / "features"
    features.clear_memory()
