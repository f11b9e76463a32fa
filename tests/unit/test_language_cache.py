"""The instruction-embedding cache stays bounded (an LRU), and an evicted string re-encodes the same."""

import pytest
import torch

from vla_runtime.policy.language import LanguageEncoder

pytestmark = pytest.mark.unit


def test_the_instruction_cache_is_a_bounded_lru() -> None:
    enc = LanguageEncoder(cache_size=4)
    first = enc.encode(["pick up the red cube"])
    for k in range(20):  # one distinct instruction per episode
        enc.encode([f"push the block to target {k}", "pick up the red cube"])  # the first stays recent
        assert len(enc._cache) <= 4
    assert "pick up the red cube" in enc._cache and "push the block to target 0" not in enc._cache
    again = enc.encode([f"t{k}" for k in range(6)] + ["pick up the red cube"])  # more than fit in one call
    assert again.shape[0] == 7 and len(enc._cache) == 4
    torch.testing.assert_close(enc.encode(["push the block to target 0"]), LanguageEncoder().encode(
        ["push the block to target 0"]))
    torch.testing.assert_close(again[-1:], first)
    with pytest.raises(ValueError, match="cache_size"):
        LanguageEncoder(cache_size=0)
