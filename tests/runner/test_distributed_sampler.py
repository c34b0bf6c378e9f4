"""RankSlice: each rank's strided share of the epoch's (curriculum) order."""

from __future__ import annotations

import pytest

from voldefense.distributed import DistContext, RankSlice
from voldefense.training import ShuffleSampler


class Fixed:
    def __init__(self, order):
        self.order = list(order)
        self.epoch = None

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def test_ranks_cover_the_order_once_and_keep_the_curriculum_stage():
    order = [9, 3, 7, 1, 5, 0, 2, 8]
    shares = [list(RankSlice(Fixed(order), r, 2)) for r in range(2)]
    assert shares == [[9, 7, 5, 2], [3, 1, 0, 8]]
    assert sorted(shares[0] + shares[1]) == sorted(order)


def test_uneven_orders_are_padded_so_every_rank_runs_the_same_batches():
    shares = [list(RankSlice(Fixed(range(7)), r, 3)) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    assert len(RankSlice(Fixed(range(7)), 0, 3)) == 3
    assert set(sum(shares, [])) == set(range(7))


def test_set_epoch_is_forwarded():
    inner = Fixed(range(4))
    RankSlice(inner, 1, 2).set_epoch(5)
    assert inner.epoch == 5
    with pytest.raises(ValueError):
        RankSlice(inner, 2, 2)


def test_shuffle_sampler_depends_on_seed_and_epoch_only():
    a, b = ShuffleSampler(20, seed=1), ShuffleSampler(20, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(20))
    b.set_epoch(4)
    assert list(a) != list(b)


def test_single_process_context_is_inert():
    context = DistContext()
    assert not context.enabled and context.is_main
    assert context.all_reduce_sum([1.0, 2.0], device=None) == [1.0, 2.0]
    context.barrier()
