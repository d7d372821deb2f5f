from __future__ import annotations

from sidecar.core.listing import version_key


def test_versions_sort_naturally() -> None:
    versions = ["1.10.0", "1.9.0", "1.2", "2.0-beta", "2.0", "10"]
    assert sorted(versions, key=version_key) == ["1.2", "1.9.0", "1.10.0", "2.0", "2.0-beta", "10"]
