"""GrowingHistoryBuffer: mmengine's HistoryBuffer (values, dtypes,
statistics, trimming, checkpointed state) with appends that do not copy
the history."""
import copy
import pickle
import random

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mopro.checkpoint import load_checkpoint
from mopro.engine.message_hub import (GrowingHistoryBuffer, GrowingScalars,
                                      grow_histories)


def _same(ours: HistoryBuffer, theirs: HistoryBuffer) -> None:
    for a, b in zip(ours.data, theirs.data):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()
    if len(theirs.data[0]):
        for window in (1, 3, 10, None):
            assert ours.mean(window) == theirs.mean(window)
            assert ours.min(window) == theirs.min(window)
            assert ours.max(window) == theirs.max(window)
        assert ours.current() == theirs.current()


@pytest.mark.parametrize('max_length', [5, 1000000])
def test_updates_give_mmengines_history(max_length):
    """Ints, then floats (the dtype widens as np.append widens it), float
    counts, past max_length, and the arrays handed out before unchanged."""
    rng = random.Random(0)
    ours = GrowingHistoryBuffer([3], [1], max_length=max_length)
    theirs = HistoryBuffer([3], [1], max_length=max_length)
    handed_out = []
    for step in range(300):
        value = rng.randint(-5, 5) if step < 40 else rng.uniform(-1, 1)
        count = 2.5 if step == 150 else rng.randint(1, 3)
        ours.update(value, count)
        theirs.update(value, count)
        _same(ours, theirs)
        handed_out.append([a.copy() for a in ours.data] + list(ours.data))
    for logs, counts, logs_view, counts_view in handed_out:
        assert np.array_equal(logs, logs_view)
        assert np.array_equal(counts, counts_view)


def test_type_errors_are_mmengines():
    ours, theirs = GrowingHistoryBuffer(), HistoryBuffer()
    for bad in (np.float32(1), '1', None):
        with pytest.raises(TypeError) as ours_err:
            ours.update(bad)
        with pytest.raises(TypeError) as theirs_err:
            theirs.update(bad)
        assert str(ours_err.value) == str(theirs_err.value)
    _same(ours, theirs)


def test_appends_reallocate_only_when_full():
    """n appends copy the history O(log n) times (mmengine's: n times)."""
    buffer = GrowingHistoryBuffer()
    stores = set()
    for step in range(10000):
        buffer.update(float(step))
        stores.add(id(buffer._logs))
    assert len(stores) <= 14  # capacity 64, 96, 144, ..., 11_000
    assert buffer.data[0].tolist() == [float(i) for i in range(10000)]


def test_copies_and_checkpoints_are_plain_history_buffers(tmp_path):
    buffer = GrowingHistoryBuffer([1.0, 2.0], [1, 1], max_length=7)
    buffer.update(3.5)
    for copied in (copy.deepcopy(buffer), pickle.loads(pickle.dumps(buffer))):
        assert type(copied) is HistoryBuffer
        assert copied.max_length == 7
        _same(copied, HistoryBuffer([1.0, 2.0, 3.5], [1, 1, 1]))
    # the project's weights-only loader allows mmengine's class, not ours
    path = str(tmp_path / 'hub.pth')
    torch.save(dict(message_hub=dict(log_scalars=dict(loss=buffer))), path)
    loaded = load_checkpoint(path)['message_hub']['log_scalars']['loss']
    assert type(loaded) is HistoryBuffer
    assert loaded.data[0].tolist() == [1.0, 2.0, 3.5]


def test_message_hub_grows_new_and_loaded_histories():
    hub = grow_histories(MessageHub('grow_test'))
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 2.5)
    assert isinstance(hub.log_scalars, GrowingScalars)
    assert type(hub.get_scalar('train/loss')) is GrowingHistoryBuffer
    state = hub.state_dict()
    assert type(state['log_scalars']['train/loss']) is HistoryBuffer
    resumed = grow_histories(MessageHub('grow_test_resumed'))
    resumed.load_state_dict(state)
    loss = resumed.get_scalar('train/loss')
    assert type(loss) is GrowingHistoryBuffer
    loss.update(0.5)
    assert loss.data[0].tolist() == [1.5, 2.5, 0.5]
    assert state['log_scalars']['train/loss'].data[0].tolist() == [1.5, 2.5]
