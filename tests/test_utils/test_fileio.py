"""Atomic writes for tool outputs and checkpoints."""
import json
import os
import signal

import pytest
from mmengine.fileio import get_file_backend

from mopro.utils.fileio import AtomicLocalBackend, atomic_path, write_json


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
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='atomic_local'))
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


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_outputs_get_the_umask_permissions(tmp_path, umask):
    """As ``open(path, 'w')`` would make them (0644 under umask 022), not
    ``tempfile.mkstemp``'s 0600: colleagues on a shared cluster read them.
    Also when an existing file is replaced."""
    expected = 0o666 & ~umask
    json_path = tmp_path / 'out.json'
    json_path.write_text('old')
    os.chmod(json_path, 0o600)
    write_json(str(json_path), dict(a=1))
    with atomic_path(str(tmp_path / 'sub' / 'features.npy')) as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'x')
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='atomic_local'))
    backend.put(b'checkpoint', str(tmp_path / 'epoch_1.pth'))
    backend.put_text('epoch_1.pth', str(tmp_path / 'last_checkpoint'))
    for path in (json_path, tmp_path / 'sub' / 'features.npy',
                 tmp_path / 'epoch_1.pth', tmp_path / 'last_checkpoint'):
        assert os.stat(path).st_mode & 0o777 == expected, path


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    """A process SIGKILLed inside ``atomic_path`` leaves its temporary;
    ``remove_stale_temporaries`` removes those of the named targets only."""
    from mopro.utils.fileio import remove_stale_temporaries
    for name in ('epoch_3.pth', 'last_checkpoint', 'pseudo_labels.json'):
        pid = os.fork()
        if pid == 0:  # the child writes half and dies
            try:
                with atomic_path(str(tmp_path / name)) as tmp:
                    with open(tmp, 'wb') as f:
                        f.write(b'half')
                        f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            finally:
                os._exit(1)  # never back into pytest
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
    # older versions' mkstemp temporaries; unrelated hidden files
    for name in ('.epoch_2.pth.k1_x9abc.tmp', '.notes.tmp', 'epoch_1.pth',
                 '.epoch_1.pth.swp'):
        (tmp_path / name).write_bytes(b'x')
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 7, names

    removed = remove_stale_temporaries(str(tmp_path), '*.pth')
    assert sorted(os.path.basename(p) for p in removed) == [
        n for n in names if n.startswith(('.epoch_2.pth.', '.epoch_3.pth.'))
    ]
    assert len(removed) == 2
    removed = remove_stale_temporaries(str(tmp_path), 'last_checkpoint')
    assert len(removed) == 1
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 4, left
    assert left[2].startswith('.pseudo_labels.json.'), left
    assert [left[0], left[1],
            left[3]] == ['.epoch_1.pth.swp', '.notes.tmp', 'epoch_1.pth']
    assert remove_stale_temporaries(str(tmp_path / 'missing'), '*') == []
