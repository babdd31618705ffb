"""No tool writes onto a file it reads: an output that is an input (the
same file, also through a link) is one line before the work, and the input
is left as it was. The tools' work runs in this process inside
``run_tool`` (``helpers.commands.call_tool``).

Each case used to overwrite its input: ``noise_cleaning --out`` onto the
training list it reads (exit 0, the list replaced by JSON), ``train`` and
``test`` with a config in their work dir (mmengine's Runner writes its
copy of the config there, over the file: the ``--cfg-options`` baked in,
the ``_base_`` gone), ``train`` from ``load_from=<work dir>/epoch_1.pth``
(replaced by the run's own first checkpoint), ``train_d2`` with a
``--config-file`` or ``MODEL.WEIGHTS`` in its ``OUTPUT_DIR`` (Detectron2's
copy of the config and its ``model_final.pth``).
"""
import os.path as osp
import pickle

import pytest

from mopro.utils.errors import UserError
from helpers import ROOT
from helpers.commands import call_tool, tool_module
from helpers.configs import tiny_mopro_options, untrained_checkpoint
from helpers.data import make_webvision, write_image

K = 4
V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
CUSTOM = osp.join(ROOT, 'configs', 'mopro_r50_custom.py')


def _options(root: str, **extra) -> list:
    options = tiny_mopro_options(root, '.', K)
    del options['work_dir']
    options.update({
        'train_cfg.max_epochs': 1,
        'visualizer.vis_backends': None,
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None
    })
    options.update(extra)
    return ['--cfg-options', *[f'{k}={v}' for k, v in options.items()]]


def _custom_lists(root) -> str:
    """A folder of two classes and the lists of tools/dataset_converters/
    folder_to_lists.py."""
    lines = []
    for label, name in enumerate(('bird', 'cat')):
        for i in range(4):
            write_image(str(root / name / f'{i}.jpg'), 10 * label + i, 32)
            lines.append(f'{name}/{i}.jpg {label}')
    (root / 'train.txt').write_text('\n'.join(lines) + '\n')
    (root / 'val.txt').write_text('\n'.join(lines[::4]) + '\n')
    (root / 'classes.txt').write_text('bird\ncat\n')
    return str(root)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('inputs')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    options = dict(tiny_mopro_options(root, '.', K))
    return dict(
        tmp=tmp, root=root, ckpt=untrained_checkpoint(V1, options,
                                                      str(tmp / 'mopro.pth')),
        custom=_custom_lists(tmp / 'mine'), custom_ckpt=untrained_checkpoint(
            CUSTOM,
            dict(
                options, **{
                    'model.num_classes': 2,
                    'train_dataloader.dataset.data_root': None
                }), str(tmp / 'custom.pth')))


def _contents(paths) -> dict:
    return {path: open(path, 'rb').read() for path in paths}


def test_noise_cleaning_refuses_to_write_onto_a_webvision_list(
        inputs, tmp_path, capsys, monkeypatch):
    lst = osp.join(inputs['root'], 'info', 'train_filelist_google.txt')
    before = _contents([lst])
    result = call_tool(
        tool_module('noise_cleaning'), [
            V1, inputs['ckpt'], '--out', lst, '--num-workers', 0, '--work-dir',
            tmp_path / 'work', *_options(inputs['root'])
        ], capsys, monkeypatch)
    assert result.error == (f'error: {lst}: the --out file is the input '
                            f'{lst}; write it to another path')
    assert _contents([lst]) == before
    assert not (tmp_path / 'work').exists()


@pytest.mark.parametrize('name', ['train.txt', 'classes.txt'])
def test_noise_cleaning_refuses_to_write_onto_a_custom_list(
        inputs, tmp_path, capsys, monkeypatch, name):
    """``configs/mopro_r50_custom.py``: the training list and the class
    names the dataset reads."""
    root = inputs['custom']
    lst = osp.join(root, name)
    before = _contents([lst])
    result = call_tool(
        tool_module('noise_cleaning'), [
            CUSTOM, inputs['custom_ckpt'], '--out', lst, '--num-workers', 0,
            '--work-dir', tmp_path / 'work', *_options(
                root, data_root=root, num_classes=2, **{
                    'train_dataloader.dataset.data_root': root,
                    'train_dataloader.dataset.num_classes': 2,
                    'val_dataloader.dataset.data_root': root,
                    'val_dataloader.dataset.num_classes': 2,
                    'model.num_classes': 2
                })
        ], capsys, monkeypatch)
    assert result.error == (f'error: {lst}: the --out file is the input '
                            f'{lst}; write it to another path')
    assert _contents([lst]) == before


@pytest.mark.parametrize('tool', ['train', 'test'])
@pytest.mark.parametrize('where', ['config', 'base'])
def test_the_config_copy_of_the_work_dir_is_not_an_input(
        inputs, tmp_path, capsys, monkeypatch, tool, where):
    """The Runner copies the config to ``<work dir>/<config file name>``:
    the config itself there (a copy of an earlier run, edited), or a base
    config of that name, is refused before the Runner is built."""
    work = tmp_path / 'work'
    work.mkdir()
    if where == 'config':
        config = work / 'mine.py'
        config.write_text(f'_base_ = [{V1!r}]\n')
        clobbered = config
    else:
        clobbered = work / 'mine.py'
        clobbered.write_text(f'_base_ = [{V1!r}]\n')
        (tmp_path / 'configs').mkdir()
        config = tmp_path / 'configs' / 'mine.py'
        config.write_text("_base_ = ['../work/mine.py']\n")
    before = _contents([clobbered])
    ckpt = [inputs['ckpt']] if tool == 'test' else []
    result = call_tool(
        tool_module(tool),
        [config, *ckpt, '--work-dir', work, *_options(inputs['root'])], capsys,
        monkeypatch)
    assert result.error == (
        f'error: {work}/mine.py: the copy of the config that the Runner '
        f'writes is the input {clobbered}; choose another --work-dir')
    assert _contents([clobbered]) == before
    assert sorted(p.name for p in work.iterdir()) == ['mine.py']


def test_training_from_a_checkpoint_it_would_replace_is_refused(
        inputs, tmp_path, capsys, monkeypatch):
    work = tmp_path / 'work'
    work.mkdir()
    start = work / 'epoch_1.pth'
    start.write_bytes(open(inputs['ckpt'], 'rb').read())
    before = _contents([start])
    result = call_tool(
        tool_module('train'),
        [V1, '--work-dir', work, *_options(inputs['root'], load_from=start)],
        capsys, monkeypatch)
    assert result.error == (
        f'error: {start}: the checkpoint this run writes is the input '
        f'{start}; copy load_from out of {work} or choose another '
        '--work-dir')
    assert _contents([start]) == before
    assert sorted(p.name for p in work.iterdir()) == ['epoch_1.pth']


def test_train_d2_keeps_its_config_file_and_weights(tmp_path):
    """Detectron2 writes ``OUTPUT_DIR/config.yaml`` and, training,
    ``model_final.pth``: a ``--config-file`` or ``MODEL.WEIGHTS`` there
    (an earlier run's) is refused before anything is written."""
    pytest.importorskip('detectron2')
    from mopro.transfer import d2_train
    out = tmp_path / 'out'
    out.mkdir()
    config = out / 'config.yaml'
    config.write_text('_BASE_: "{}"\n'.format(
        osp.join(ROOT, 'configs', 'detectron2', 'coco_R_50_FPN_1x.yaml')))
    weights = tmp_path / 'weights.pkl'
    weights.write_bytes(pickle.dumps({'model': {}}))
    final = out / 'model_final.pth'
    final.write_bytes(b'weights of an earlier run')
    before = _contents([config, final])
    for config_file, model_weights, message in [
        (config, weights, f'{config}: the copy of the config that '
         f'Detectron2 writes is the input {config}'),
        (tmp_path / 'config.yaml', final, f'{final}: the checkpoint this '
         f'run writes is the input {final}'),
    ]:
        if config_file != config:
            config_file.write_text(config.read_text())
        args = d2_train.parse_args([
            '--config-file',
            str(config_file), '--num-gpus', '0', 'OUTPUT_DIR',
            str(out), 'MODEL.WEIGHTS',
            str(model_weights)
        ])
        with pytest.raises(UserError) as info:
            d2_train.setup(args)
        assert str(info.value) == f'{message}; choose another OUTPUT_DIR'
    assert _contents([config, final]) == before
    assert sorted(
        p.name for p in out.iterdir()) == ['config.yaml', 'model_final.pth']
