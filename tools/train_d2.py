r"""Fine-tune a converted MoPro encoder on COCO with Detectron2 (Mask R-CNN).

Object detection / instance segmentation transfer of the paper (Section
5.1, Table 4; protocol in Appendix C and ``configs/detectron2/``)::

    python tools/convert_to_d2.py mopro_r50.pth mopro_r50.pkl
    DETECTRON2_DATASETS=/data python tools/train_d2.py \
        --config-file configs/detectron2/coco_R_50_FPN_1x.yaml \
        --num-gpus 8 MODEL.WEIGHTS mopro_r50.pkl MODEL.RESNETS.DEPTH 50

A smoke run on CPU (a few minutes; a generated shapes dataset)::

    python tools/train_d2.py \
        --config-file configs/detectron2/coco_R_50_FPN_smoke_cpu.yaml \
        --num-gpus 0 MODEL.WEIGHTS mopro_r50.pkl MODEL.RESNETS.DEPTH 50

Options are Detectron2's (``--num-machines``, ``--machine-rank``,
``--dist-url``, ``--eval-only``, ``--resume``, trailing ``KEY VALUE``
config overrides) plus ``--register NAME JSON IMAGE_DIR`` for extra
COCO-format datasets. COCO 2017 uses Detectron2's built-in
``coco_2017_train``/``coco_2017_val`` under ``$DETECTRON2_DATASETS/coco``.
On CPU (``--num-gpus 0`` or ``MODEL.DEVICE cpu``) every ``SyncBN`` becomes
``BN``. The logic is :mod:`mopro.transfer.d2_train`.
"""
from typing import List, Optional

# first: mopro.transfer.d2_compat.install() must run before detectron2 imports
import mopro  # noqa: F401 isort:skip
from mopro.transfer.d2_compat import require_detectron2
from mopro.utils.errors import run_tool


def main(argv: Optional[List[str]] = None) -> None:
    require_detectron2('tools/train_d2.py')
    from mopro.transfer.d2_train import launch_training, parse_args
    launch_training(parse_args(argv, doc=__doc__))


if __name__ == '__main__':
    run_tool(main)
