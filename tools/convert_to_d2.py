r"""Convert a MoPro checkpoint into a Detectron2 backbone checkpoint (.pkl).

Accepts this project's checkpoints and the released original ones; keeps
the encoder only (see ``mopro/transfer/d2_convert.py``). Its last line is
the Detectron2 overrides that load the output (``MODEL.WEIGHTS``, the
depth, and for ResNet-18/34 ``MODEL.RESNETS.RES2_OUT_CHANNELS 64``), to
append to ``tools/train_d2.py``. Example::

    python tools/convert_to_d2.py work_dirs/mopro_r50/epoch_90.pth \
        mopro_r50.pkl
    python tools/train_d2.py \
        --config-file configs/detectron2/coco_R_50_FPN_1x.yaml \
        --num-gpus 8 MODEL.WEIGHTS mopro_r50.pkl MODEL.RESNETS.DEPTH 50
"""
import argparse
from typing import List, Optional

from mopro.transfer.d2_convert import convert_to_detectron2, format_summary
from mopro.utils.cli import add_checkpoint_args, tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_checkpoint_args(parser)
    parser.add_argument('output', help='Detectron2 checkpoint to write (.pkl)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    summary = convert_to_detectron2(args.checkpoint, args.output,
                                    trust=args.trust_checkpoint)
    print(format_summary(summary, args.output))


if __name__ == '__main__':
    run_tool(main)
