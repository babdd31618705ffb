"""Atomic writes for tool outputs and checkpoints."""
import json
import os

import pytest
from mmengine.fileio import get_file_backend

from mopro.utils import AtomicLocalBackend, atomic_path, write_json


def test_atomic_path_replaces_on_success(tmp_path):
    out = tmp_path / 'out.json'
    out.write_text('old')
    with atomic_path(str(out)) as tmp:
        assert not os.path.samefile(tmp, out)
        with open(tmp, 'w') as f:
            f.write('new')
        assert out.read_text() == 'old'  # untouched until the end
    assert out.read_text() == 'new'
    assert sorted(os.listdir(tmp_path)) == ['out.json']


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    out = tmp_path / 'sub' / 'out.json'
    with pytest.raises(KeyError):
        with atomic_path(str(out)) as tmp:
            open(tmp, 'w').write('half')
            raise KeyError('boom')
    assert os.listdir(tmp_path / 'sub') == []


def test_checkpoint_backend_is_atomic(tmp_path, monkeypatch):
    backend = get_file_backend(str(tmp_path),
                               backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    ckpt = tmp_path / 'epoch_1.pth'
    backend.put(b'complete checkpoint', str(ckpt))
    backend.put_text('epoch_1.pth', str(tmp_path / 'last_checkpoint'))

    # a save interrupted half-way keeps the previous complete file
    real_open = open

    class Killed(Exception):
        pass

    def dying_open(path, mode='r', *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if 'w' in mode:
            def write(data):
                real_open(path, 'ab').write(data[:5])
                raise Killed
            handle.write = write
        return handle

    monkeypatch.setattr('builtins.open', dying_open)
    with pytest.raises(Killed):
        backend.put(b'new checkpoint bytes', str(ckpt))
    monkeypatch.undo()
    assert ckpt.read_bytes() == b'complete checkpoint'
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'last_checkpoint']


def test_write_json_is_whole_or_absent(tmp_path):
    path = tmp_path / 'sub' / 'out.json'
    write_json(str(path), dict(a=[1, 2]))
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
    with pytest.raises(TypeError):
        write_json(str(path), dict(a=object()))  # not JSON: old file stays
    assert json.loads(path.read_text()) == dict(a=[1, 2])
    assert sorted(p.name for p in path.parent.iterdir()) == ['out.json']
