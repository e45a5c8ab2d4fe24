import platform

import pytest

from service.ops.memory import map_large_blocks


def test_map_large_blocks_changes_nothing_for_a_zero_threshold():
    assert map_large_blocks(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_map_large_blocks_sets_glibcs_threshold():
    assert map_large_blocks(128 * 1024) is True
