"""tools/dataset_converters/lists_to_shards.py: image lists into tar
shards, re-runnable after an interruption, undecodable images named, the
input never written to."""
import os
import os.path as osp
import tarfile
from collections import Counter

import pytest

from mopro.datasets.file_list import read_file_list
from mopro.datasets.shards import read_index
from mopro.datasets.shards import writer as shard_writer
from helpers.commands import call_tool, tool_module
from helpers.shards import shard_records

TOOL = tool_module('dataset_converters/lists_to_shards')


def convert(capsys, monkeypatch, root, out, *extra):
    return call_tool(TOOL, [
        'webvision', root, '--out', out, '--shard-records', 5, '--workers', 1,
        *extra
    ], capsys, monkeypatch)


def folder_bytes(folder):
    return {
        name: open(osp.join(folder, name), 'rb').read()
        for name in sorted(os.listdir(folder))
    }


def test_shards_hold_the_lists_records_in_webdataset_layout(
        webvision_root, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / 'shards')
    result = convert(capsys, monkeypatch, webvision_root, out)
    assert result.code == 0, result.stderr
    index = read_index(osp.join(out, 'train-index.json'))
    # 32 images (4 classes x 8, google + flickr), 5 per shard
    assert [s.records for s in index.shards] == [5] * 6 + [2]
    assert [s.name for s in index.shards
            ][:2] == ['train-000000.tar', 'train-000001.tar']
    with tarfile.open(osp.join(out, 'train-000000.tar')) as tar:
        names = tar.getnames()
    key = names[0].split('.')[0]
    assert names[:3] == [f'{key}.jpg', f'{key}.cls', f'{key}.json']
    records = shard_records(index)
    expected = Counter()
    for source in ('google', 'flickr'):
        images = read_file_list(
            osp.join(webvision_root, 'info', f'train_filelist_{source}.txt'))
        for i in range(len(images)):
            path = images.path(i)
            with open(osp.join(webvision_root, path), 'rb') as f:
                expected[(source, path, int(images.labels[i]), f.read())] += 1
    assert Counter((r.meta['source'], r.meta['path'], r.label, r.image)
                   for r in records) == expected
    assert all(r.meta['key'] == r.key for r in records)
    # the records are mixed across the class-sorted lists
    assert len({r.label for r in records[:5]}) > 1
    assert [x['records'] for x in index.lists] == [16, 16]


def test_rerun_after_an_interruption_writes_the_same_shards(
        webvision_root, tmp_path, capsys, monkeypatch):
    """Interrupted in the middle of shard 3 (after a kill left a temporary
    file of shard 5 too), the re-run keeps shards 0-2 and writes the same
    bytes as an uninterrupted run with two processes."""
    straight = str(tmp_path / 'straight')
    result = call_tool(TOOL, [
        'webvision', webvision_root, '--out', straight, '--shard-records', 5,
        '--workers', 2
    ], capsys, monkeypatch)
    assert result.code == 0, result.stderr

    out = str(tmp_path / 'interrupted')
    calls = []
    real_write = shard_writer.write_record

    def write_then_stop(tar, record):
        calls.append(record.key)
        if len(calls) == 17:  # the third record of shard 3
            raise KeyboardInterrupt
        real_write(tar, record)

    monkeypatch.setattr(shard_writer, 'write_record', write_then_stop)
    assert convert(capsys, monkeypatch, webvision_root, out).code == 130
    monkeypatch.setattr(shard_writer, 'write_record', real_write)
    # finished shards are complete, the one being written is not there
    assert sorted(n for n in os.listdir(out) if not n.startswith('.')) == \
        ['train-000000.tar', 'train-000001.tar', 'train-000002.tar']
    stale = osp.join(out, '.train-000005.tar.0123456789abcdef.tmp')
    with open(stale, 'wb') as f:
        f.write(b'half a shard')

    result = convert(capsys, monkeypatch, webvision_root, out)
    assert result.code == 0, result.stderr
    assert folder_bytes(out) == folder_bytes(straight)
    assert not osp.exists(stale)


def test_rerun_reports_kept_shards(webvision_root, tmp_path, capsys,
                                   monkeypatch):
    out = str(tmp_path / 'shards')
    calls = []
    real_write = shard_writer.write_record

    def write_then_stop(tar, record):
        calls.append(record.key)
        if len(calls) == 7:
            raise KeyboardInterrupt
        real_write(tar, record)

    monkeypatch.setattr(shard_writer, 'write_record', write_then_stop)
    convert(capsys, monkeypatch, webvision_root, out)
    monkeypatch.setattr(shard_writer, 'write_record', real_write)
    capsys.readouterr()
    monkeypatch.delenv('MOPRO_TRACEBACK', raising=False)
    TOOL.main([
        'webvision', webvision_root, '--out', out, '--shard-records', '5',
        '--workers', '1'
    ])
    assert '1 of 7 shards kept from an earlier run' in capsys.readouterr().out
    before = folder_bytes(out)
    TOOL.main([
        'webvision', webvision_root, '--out', out, '--shard-records', '5',
        '--workers', '1'
    ])
    assert 'already converted, nothing to do' in capsys.readouterr().out
    assert folder_bytes(out) == before
    # another seed into the same folder would mix two conversions
    result = convert(capsys, monkeypatch, webvision_root, out, '--seed', 1)
    assert 'another conversion' in result.error


def test_undecodable_images_are_named_and_not_written(webvision_root, tmp_path,
                                                      capsys, monkeypatch):
    broken = 'google/q0001/002.jpg'
    with open(osp.join(webvision_root, broken), 'wb') as f:
        f.write(b'not an image')
    missing = 'flickr/q0003/001.jpg'
    os.remove(osp.join(webvision_root, missing))
    out = str(tmp_path / 'shards')
    capsys.readouterr()
    monkeypatch.delenv('MOPRO_TRACEBACK', raising=False)
    index = TOOL.main([
        'webvision', webvision_root, '--out', out, '--shard-mb', '0.02',
        '--workers', '1'
    ])
    printed = capsys.readouterr().out
    assert sorted(b['path'] for b in index.bad_images) == [missing, broken]
    assert f'undecodable, not written: {broken}' in printed
    assert f'undecodable, not written: {missing}' in printed
    assert '30 images of 32 listed (2 undecodable)' in printed
    paths = [r.meta['path'] for r in shard_records(index)]
    assert len(paths) == index.num_records == 30
    assert broken not in paths and missing not in paths
    # --shard-mb: 20 kB hold 4 records of ~2.2 kB images + 2 kB of tar
    # headers (a tar file is then padded to 10 kB blocks)
    assert [s.records for s in index.shards][:-1] == [4] * 7


@pytest.mark.parametrize('inside', ['', 'shards', 'google/shards'])
def test_refuses_to_write_into_its_input(webvision_root, inside, capsys,
                                         monkeypatch):
    out = osp.join(webvision_root, inside)
    before = sorted(os.walk(webvision_root))
    result = convert(capsys, monkeypatch, webvision_root, out)
    assert 'lies in the input folder' in result.error
    assert sorted(os.walk(webvision_root)) == before


def test_own_data_lists_convert(tmp_path, capsys, monkeypatch):
    from helpers.data import write_image
    root = tmp_path / 'my images'
    lines = []
    for label, name in enumerate(['cat', 'dog']):
        for i in range(3):
            write_image(str(root / name / f'{i}.png'), label * 10 + i, 16)
            lines.append(f'{name}/{i}.png {label}')
    (root / 'train.txt').write_text('\n'.join(lines) + '\n')
    (root / 'classes.txt').write_text('cat\ndog\n')
    out = str(tmp_path / 'my shards')
    result = call_tool(
        TOOL, ['folder', str(root), '--out', out, '--workers', 1], capsys,
        monkeypatch)
    assert result.code == 0, result.stderr
    index = result.value
    assert index.classes == ['cat', 'dog'] and index.num_classes == 2
    records = shard_records(index)
    assert sorted((r.meta['path'], r.label, r.ext) for r in records) == \
        sorted((line.split()[0], int(line.split()[1]), 'png')
               for line in lines)
