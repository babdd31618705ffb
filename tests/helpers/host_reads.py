"""A detector of the operators that make a CUDA step wait for the device,
shared by the step and Runner-loop sync tests."""
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostReads(TorchDispatchMode):
    """Records the operators that make a CUDA step wait for the device: a
    read of a value on the host (``.item()``, ``bool()``, ``int()``),
    outputs whose size depends on values (``nonzero``, boolean-mask
    indexing, ``bincount``, ``unique``, ``masked_select``) and tensors made
    from Python data inside the step (``torch.tensor``: a blocking upload).
    On CPU these cost nothing, but they dispatch all the same, so the test
    runs without a GPU."""

    SYNCING = ('aten._local_scalar_dense', 'aten.nonzero', 'aten.bincount',
               'aten.masked_select', 'aten.lift_fresh', 'aten._unique',
               'aten.unique', 'aten.repeat_interleave.Tensor')

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        bool_index = name.startswith('aten.index.Tensor') and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool
            for i in args[1])
        if bool_index or name.startswith(self.SYNCING):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))
