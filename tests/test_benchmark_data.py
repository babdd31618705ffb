"""tools/benchmark_data.py times both pipelines and reports them
consistently (no timing assertion: speed is measured, not tested)."""
import json
import math
import os.path as osp

import pytest

from conftest import ROOT, load_tool, write_image

benchmark_data = load_tool('benchmark_data')
CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _check(results: dict, out: str, count: int) -> None:
    assert json.load(open(out)) == json.loads(json.dumps(results))
    assert results['threads'] == 1 and results['iters'] == 3
    assert results['block'] == 2
    assert results['images']['count'] == count
    for name in ('project', 'released'):
        rate = results[name]['img_per_s_per_core']
        assert rate > 0
        assert rate * results[name]['ms_per_image'] == pytest.approx(1e3)
    # where normalisation happens, each pipeline as shipped
    assert 'on the GPU' in results['project']['output']
    assert 'on the CPU' in results['released']['output']
    rate = results['project']['img_per_s_per_core']
    assert results['project_vs_released'] == (
        rate / results['released']['img_per_s_per_core'])
    assert results['gpu_img_per_s'] == 2600
    assert results['cores_per_gpu_for_2600_img_s'] == math.ceil(2600 / rate)
    assert results['cpu']
    assert set(results['versions']) == {'python', 'torch', 'torchvision',
                                        'pillow', 'numpy'}


def test_default_photos(tmp_path):
    out = str(tmp_path / 'data.json')
    results = benchmark_data.main([
        CONFIG, '--num-images', '3', '--iters', '3', '--warmup', '1',
        '--block', '2', '--out', out
    ])
    _check(results, out, 3)
    # crops of scikit-learn's photos at WebVision's 256-pixel short side
    images = results['images']
    assert 'scikit-learn' in images['source']
    assert min(images['mean_height'], images['mean_width']) >= 256


def test_image_folder(tmp_path):
    folder = tmp_path / 'jpegs'
    for i in range(4):
        write_image(str(folder / f'{i}.jpg'), i, size=48)
    write_image(str(folder / 'skipped.png'), 9, size=48)
    out = str(tmp_path / 'data.json')
    results = benchmark_data.main([
        CONFIG, '--images', str(folder), '--iters', '3', '--warmup', '1',
        '--block', '2', '--out', out, '--cfg-options',
        'train_dataloader.dataset.pipeline.1.transforms.0.0.scale=32',
        'train_dataloader.dataset.pipeline.1.transforms.1.0.scale=32'
    ])
    _check(results, out, 4)
    assert results['images']['source'] == str(folder)
    assert results['images']['mean_height'] == 48


def test_empty_image_folder_is_an_error(tmp_path):
    folder = str(tmp_path / 'empty')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit) as err:
        benchmark_data.main([CONFIG, '--images', folder])
    message = str(err.value)
    assert message.startswith('error: ') and folder in message
    assert '\n' not in message


def test_missing_config_is_an_error(tmp_path):
    config = str(tmp_path / 'missing.py')
    with pytest.raises(SystemExit, match='error: .*missing.py'):
        benchmark_data.main([config])
