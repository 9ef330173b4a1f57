"""``engine.recent.Recent``: keeps the most recently used entries, forgets the oldest."""

from __future__ import annotations

import pytest

from engine.recent import Recent


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: Recent[int, str] = Recent(2)
    cache.put(1, "one")
    cache.put(2, "two")
    assert cache.get(1) == "one"  # 1 is now the most recent
    cache.put(3, "three")
    assert (cache.get(1), cache.get(2), cache.get(3)) == ("one", None, "three")
    assert len(cache) == 2


def test_put_again_replaces_and_pop_forgets() -> None:
    cache: Recent[str, int] = Recent(3)
    cache.put("a", 1)
    cache.put("a", 2)
    assert cache.get("a") == 2 and len(cache) == 1
    assert cache.pop("a") == 2
    assert cache.pop("a") is None
    assert len(cache) == 0


def test_a_cache_keeps_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Recent(0)
