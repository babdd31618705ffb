"""DDP's gradient all-reduce in bf16, an option (off by default)."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import \
    bf16_compress_hook
from torch.nn.parallel import DistributedDataParallel


def compress_gradients_bf16(model: object) -> bool:
    """Register torch's ``bf16_compress_hook`` on ``model`` if it is a
    ``DistributedDataParallel`` module (before its first backward pass);
    return whether it is one."""
    if not isinstance(model, DistributedDataParallel):
        return False
    model.register_comm_hook(state=None, hook=bf16_compress_hook)
    return True


@HOOKS.register_module()
class DDPBF16CompressionHook(Hook):
    """All-reduce the gradients in bf16 (torch's ``bf16_compress_hook``):
    ``custom_hooks=[..., dict(type='DDPBF16CompressionHook')]``.

    What it changes: DDP casts each gradient bucket to bf16, divides it by
    the number of ranks, sums it across ranks in bf16 and casts the result
    back to float32. The all-reduce, the largest per-step collective beyond
    one node (docs/speed.md, "Communication per step"), moves half the
    bytes; the averaged gradients keep bf16's 8 significant bits, and NCCL
    adds the ranks' shares in bf16, so the rounding grows with the number
    of ranks. Weights, optimizer state, queue and prototypes stay float32.
    Neither the paper nor the released code does this, and no run here has
    measured its effect on accuracy: it is off in every config. With one
    process (no DDP) it does nothing but say so.
    """

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        if compress_gradients_bf16(runner.model):
            runner.logger.info('DDP all-reduces the gradients in bf16 '
                               '(DDPBF16CompressionHook)')
        else:
            runner.logger.info('DDPBF16CompressionHook: no DDP (one '
                               'process), gradients are not all-reduced')
