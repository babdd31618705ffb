"""Training across nodes as users launch it: ``tools/dist_train.sh`` on
each node with ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR`` and ``PORT``.

Two node ranks of torchrun (``--nnodes 2``, one process each) on this
machine train the v1 config, shrunk to a CPU run, to the same checkpoint as
one node with two processes: the same world size, the same ranks, the same
batches, the same shuffles of the momentum encoder's batch across ranks."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mopro.checkpoint import load_checkpoint
from helpers import ROOT
from helpers.commands import finish, launcher_env
from helpers.configs import tiny_mopro_options
from helpers.training import V1

pytestmark = pytest.mark.skipif(sys.platform != 'linux',
                                reason='torchrun on linux')


def _dist_train(work_dir: str, data_root: str, gpus: int,
                env: dict) -> subprocess.Popen:
    """``tools/dist_train.sh`` on the shrunk v1 config: one epoch of 32
    images, 4 per rank and batch, no validation or test."""
    options = tiny_mopro_options(data_root, work_dir)
    options.update({
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 10,
        'visualizer.vis_backends': None,
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None,
    })
    return subprocess.Popen([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), V1,
        str(gpus), '--cfg-options', *[f'{k}={v}' for k, v in options.items()]
    ], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_nodes_train_to_the_checkpoint_of_one(webvision_root, tmp_path):
    one_node = str(tmp_path / 'one_node')
    two_nodes = str(tmp_path / 'two_nodes')  # shared by both, as on a cluster
    node_env = launcher_env()  # one rendezvous port for both node ranks
    procs = [
        _dist_train(one_node, webvision_root, 2, launcher_env()), *[
            _dist_train(
                two_nodes, webvision_root, 1,
                dict(node_env, NNODES='2', NODE_RANK=str(rank),
                     MASTER_ADDR='127.0.0.1')) for rank in (0, 1)
        ]
    ]
    results = finish(procs, timeout=240)
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    # node rank 0 holds rank 0, which logs: a group of two processes (the
    # other one is node rank 1's, else the group would not have formed)
    assert 'GPU number: 2' in results[1].stdout, results[1].stdout[-3000:]
    one = load_checkpoint(osp.join(one_node, 'epoch_1.pth'))
    two = load_checkpoint(osp.join(two_nodes, 'epoch_1.pth'))
    # 32 images, 2 ranks x 4 per batch: 4 iterations
    assert one['meta']['iter'] == two['meta']['iter'] == 4
    assert one['state_dict'].keys() == two['state_dict'].keys()
    for key, value in one['state_dict'].items():
        assert torch.equal(value, two['state_dict'][key]), key
    for idx, state in one['optimizer']['state'].items():
        assert torch.equal(state['momentum_buffer'],
                           two['optimizer']['state'][idx]['momentum_buffer'])
