"""Decoding of a packed batch of JPEG bytes on the device, stream-safe, in
a number of operations that does not depend on the batch size.

A batch of N entries (:func:`decode_packed`) costs one split of the packed
bytes into N views (lengths from the workers' index), one call of the
batched decoder, one pack of the decoded images into the layout that
:func:`~mopro.gpu_data.views.resized_crops` reads (``torch._chunk_cat``:
N tensors of any shapes flattened and concatenated by one operator, one
kernel on CUDA), their offsets and sizes computed from the index's heights
and widths (no image's shape is read), and one event. Python loops only
over the entries of the rare paths: pixels the workers decoded (uploaded
together and put in place), a batch the decoder rejects (bisected,
:func:`decode_isolating`; the image that fails alone goes to the tolerant
CPU decoder), an entry no decoder takes (replaced by the first good one).

Decoders (:data:`Decode`: 1-D uint8 CPU tensors in, 3 x H x W uint8 images
on the device out, ``RuntimeError`` for a batch it rejects):

- CUDA: torchvision's nvjpeg operator ``image::decode_jpegs_cuda``, called
  directly (torchvision's ``decode_jpeg`` wrapper checks the list image by
  image in Python and warns of its deprecation on every call). It runs
  without the GIL; the host waits for the whole decode, in the
  decode-ahead thread (:mod:`mopro.gpu_data.decode_ahead`);
- CPU: :func:`decode_jpegs_cpu`, libjpeg (torchvision's CPU decoder) image
  by image inside one registered operator. The per-image work of a decoder
  is the decoder's (nvjpeg parses every header too); registered as one
  operator, the CPU decoder counts as nvjpeg's one call does on CUDA, and
  the operators counted on the decoding thread (``benchmark_data.py``'s
  ``gpu_path.decode_ops_per_batch``) are this module's own.

Stream safety: torchvision's CUDA decoder allocates its outputs on the
caller's stream but writes them from a stream of its own that waits for
nothing. :class:`DecodeStream` runs it with a side stream current, after
the host synchronised that stream, packs on that stream and hands the pack
to the consumer through an event and ``record_stream``;
``docs/gpu_decoding.md`` states the protocol, proves that the decoder is
never handed memory that queued work still reads, and gives the evidence
for keeping torchvision's decoder.
"""
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torchvision.io import ImageReadMode

from mopro.datasets.collate import (HEIGHT, JPEG, KIND, NBYTES, WIDTH,
                                    PackedImages)
from mopro.datasets.transforms import (ImageDecodeError, decode_rgb_bytes,
                                       rgb_to_chw_tensor)
from mopro.models.utils.compile import out_of_memory
from mopro.utils.errors import DataError

Decode = Callable[[List[torch.Tensor]], List[torch.Tensor]]
_RGB = ImageReadMode.RGB.value


@torch.library.custom_op('mopro::decode_jpegs_cpu', mutates_args=())
def decode_jpegs_cpu(data: List[torch.Tensor]) -> List[torch.Tensor]:
    """libjpeg's RGB decoding of each entry (torchvision's CPU decoder), as
    one operator (module docstring); raises ``RuntimeError`` for an entry it
    rejects, as nvjpeg does for the batch."""
    return [torch.ops.image.decode_jpeg(entry, _RGB, False) for entry in data]


def nvjpeg_decoder(device: torch.device) -> Decode:
    """torchvision's batched nvjpeg decoder on ``device`` (one operator)."""

    def decode(data: List[torch.Tensor]) -> List[torch.Tensor]:
        return torch.ops.image.decode_jpegs_cuda(data, _RGB, device)

    return decode


@dataclass
class DecodedBatch:
    """A batch decoded on its device, in :func:`resized_crops`' layout.

    Attributes:
        flat: 1-D uint8 on the device: the 3 x H x W images back to back,
            then ``max(W)`` zeros.
        offsets: N int64 (CPU), where each image starts in ``flat``.
        sizes: N x 2 int64 (CPU), ``(height, width)`` of each image.
        bad: entries no decoder took, replaced by another of the batch.
        ready: the CUDA event after which ``flat`` is written (the
            consumer waits for it, :meth:`DecodeStream.hand_over`); None on
            the CPU.
    """
    flat: torch.Tensor
    offsets: torch.Tensor
    sizes: torch.Tensor
    bad: List[int]
    ready: Optional[object] = None


def decode_isolating(
        data: List[torch.Tensor],
        decode: Decode) -> Tuple[List[Optional[torch.Tensor]], List[int]]:
    """``decode(data)``; where it raises, the halves of ``data`` are
    decoded on their own, down to the entries that fail alone (None), whose
    positions come second. One bad entry of N costs about 2 log2(N) calls,
    not N; out-of-memory errors are raised."""
    try:
        return list(decode(data)), []
    except RuntimeError as err:
        if out_of_memory(err) is not None:
            raise
        if len(data) == 1:
            return [None], [0]
    half = len(data) // 2
    first, failed = decode_isolating(data[:half], decode)
    second, failed_after = decode_isolating(data[half:], decode)
    return first + second, failed + [half + i for i in failed_after]


class DecodeStream:
    """The side stream the decoder runs on, on one CUDA device, and the
    protocol around it (module docstring, steps 1-4).

    The device and stream calls go through :meth:`on_device`, :meth:`use`,
    :meth:`synchronize`, :meth:`settle`, :meth:`record` and
    :meth:`event`, so the protocol runs on the CPU with a stand-in stream
    in the tests.
    """

    def __init__(self, stream, device: torch.device) -> None:
        self.stream = stream
        self.device = device

    @classmethod
    def for_device(cls, device: torch.device) -> 'DecodeStream':
        return cls(torch.cuda.Stream(device), device)

    def on_device(self):
        """The device made current (a background thread's is device 0)."""
        return torch.cuda.device(self.device)

    @contextmanager
    def use(self):
        """The decode stream made current."""
        with torch.cuda.stream(self.stream):
            yield

    def synchronize(self) -> None:
        """The host waits for the decode stream's work."""
        self.stream.synchronize()

    def settle(self) -> None:
        """The host waits for all work on the device (after a rejected
        decoder call, whose writes may still be queued)."""
        torch.cuda.synchronize(self.device)

    @staticmethod
    def record(tensor: torch.Tensor, stream) -> None:
        tensor.record_stream(stream)

    def event(self):
        """An event recorded on the decode stream now."""
        return self.stream.record_event()

    def decode(self, decode: Callable[[], list]) -> list:
        """``decode()`` (the decoder's calls) with the decode stream current,
        after the host synchronised it (step 1)."""
        self.synchronize()
        with self.use():
            return decode()

    def pack(self, pack: Callable[[], tuple]) -> Tuple[tuple, object]:
        """``pack()`` on the decode stream, and the event after it
        (step 2)."""
        with self.use():
            packed = pack()
        return packed, self.event()

    def hand_over(self, packed: torch.Tensor, ready, consumer) -> None:
        """Make ``packed`` (written before the event ``ready``) safe to use,
        and to free, on ``consumer`` (step 3)."""
        consumer.wait_event(ready)
        self.record(packed, consumer)


class HostOrder(DecodeStream):
    """:class:`DecodeStream`'s interface where work runs in program order
    (the CPU): nothing to wait for, no event."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(None, device)

    def on_device(self):
        return nullcontext()

    def use(self):
        return nullcontext()

    def synchronize(self) -> None:
        pass

    def settle(self) -> None:
        pass

    def event(self) -> None:
        return None


_STREAMS: Dict[torch.device, DecodeStream] = {}


def decode_stream(device: torch.device) -> DecodeStream:
    """The process's :class:`DecodeStream` of a CUDA device."""
    if device not in _STREAMS:
        _STREAMS[device] = DecodeStream.for_device(device)
    return _STREAMS[device]


def cuda_device(device) -> torch.device:
    """``device`` with its index (the current device's if none)."""
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', torch.cuda.current_device())
    return device


def decode_packed(packed: PackedImages, device,
                  streams: Optional[DecodeStream] = None,
                  decode: Optional[Decode] = None) -> DecodedBatch:
    """Decode a batch of :class:`PackedImages` on ``device`` (CUDA: nvjpeg;
    CPU: libjpeg) into one flat tensor there, in a number of operations
    that does not depend on the batch size (module docstring).

    JPEGs go to the batched decoder (:func:`decode_isolating`); one that it
    rejects alone goes to the tolerant CPU decoder; pixels are uploaded as
    they are (one copy for all). An entry that nothing decodes is replaced
    by the first good one (listed in ``bad``); a batch with no good entry
    raises ``RuntimeError``. On CUDA the result is ready for a stream only
    after :meth:`DecodeStream.hand_over`, called by its consumer.

    Args:
        streams: the decode stream (default: the device's on CUDA, none on
            the CPU).
        decode: the batched decoder (default: :func:`nvjpeg_decoder` on
            CUDA, :func:`decode_jpegs_cpu` on the CPU).
    """
    device = cuda_device(device)
    if device.type == 'cuda':
        streams = streams or decode_stream(device)
        decode = decode or nvjpeg_decoder(device)
    else:
        streams = streams or HostOrder(device)
        decode = decode or decode_jpegs_cpu
    with streams.on_device():
        return _decode_batch(packed, streams, decode)


def _decode_batch(packed: PackedImages, streams: DecodeStream,
                  decode: Decode) -> DecodedBatch:
    """:func:`decode_packed` through the protocol of ``streams``."""
    index, paths = packed.index, packed.paths
    entries = list(packed.data.split_with_sizes(index[:, NBYTES].tolist()))
    is_jpeg = index[:, KIND] == JPEG
    pixels, jpegs = _positions(~is_jpeg), _positions(is_jpeg)
    decoded, failed = streams.decode(
        lambda: _decode_jpegs(_without(entries, pixels), decode))
    if failed:
        streams.settle()
    rescued, bad = {}, []  # rescued: by position among the JPEGs
    for j in failed:
        image = _decode_on_cpu(entries[jpegs[j]], paths[jpegs[j]])
        if image is None:
            bad.append(jpegs[j])
        else:
            rescued[j] = image
    if len(bad) == len(entries):
        raise RuntimeError('no image of the batch could be decoded, first ' +
                           (paths[0] or 'batch entry 0'))
    sizes = index[:, HEIGHT:WIDTH + 1]
    if bad:
        sizes = _replace_bad(sizes, bad)
    on_host = dict(rescued=rescued, pixels={i: entries[i] for i in pixels})
    (images, flat, offsets), ready = streams.pack(
        lambda: _pack(decoded, on_host, bad, sizes, streams.device))
    _check_sizes(flat, images, sizes, paths)
    return DecodedBatch(flat, offsets, sizes, bad, ready)


def _positions(mask: torch.Tensor) -> List[int]:
    """The indices where ``mask`` is true, as a list (no Python loop)."""
    return mask.nonzero().flatten().tolist()


def _without(entries: List[torch.Tensor],
             positions: List[int]) -> List[torch.Tensor]:
    """``entries`` less those at ``positions`` (ascending)."""
    kept = list(entries)
    for i in reversed(positions):
        del kept[i]
    return kept


def _decode_jpegs(data: List[torch.Tensor], decode: Decode) -> tuple:
    """:func:`decode_isolating` of ``data`` (nothing to do if empty)."""
    return decode_isolating(data, decode) if data else ([], [])


def _decode_on_cpu(data: torch.Tensor, name: str) -> Optional[torch.Tensor]:
    """The tolerant CPU decoder's 3 x H x W image, or None."""
    try:
        return rgb_to_chw_tensor(
            decode_rgb_bytes(data.numpy().tobytes(), name))
    except ImageDecodeError as err:
        print_log(f'skipping undecodable image: {err}', logger='current',
                  level=30)
        return None


def _replace_bad(sizes: torch.Tensor, bad: List[int]) -> torch.Tensor:
    """``sizes`` with the rows of the ``bad`` entries those of the first
    good one (which replaces them)."""
    bad_rows = set(bad)
    good = next(i for i in range(len(sizes)) if i not in bad_rows)
    rows = torch.arange(len(sizes))
    rows[bad] = good
    return sizes[rows]


def _pack(decoded: List[Optional[torch.Tensor]],
          on_host: Dict[str, Dict[int, torch.Tensor]], bad: List[int],
          sizes: torch.Tensor, device: torch.device) -> tuple:
    """The batch's images in batch order on ``device``, one flat tensor of
    them (one ``torch._chunk_cat``: the images flattened and back to back,
    then ``max(W)`` zeros), and each one's offset there (from ``sizes``).

    Args:
        decoded: the batched decoder's images, in the order of the JPEG
            entries (None where it rejected one).
        on_host: CPU images, uploaded in one copy: ``rescued``, the CPU
            decoder's images of rejected JPEGs, by position in ``decoded``;
            ``pixels``, the other entries' 1-D pixels, by batch position.
        bad: the batch positions to give the first good image.
    """
    rescued, pixels = on_host['rescued'], on_host['pixels']
    images = list(decoded)
    uploaded = iter(
        _upload(list(rescued.values()) + list(pixels.values()), device))
    for j in rescued:
        images[j] = next(uploaded)
    for i in pixels:  # ascending: each lands at its batch position
        images.insert(i, next(uploaded))
    if bad:
        good = next(image for image in images if image is not None)
        for i in bad:
            images[i] = good
    numels = 3 * sizes.prod(1)
    padding = images[0].new_zeros(int(sizes[:, 1].max()))
    flat = torch._chunk_cat(images + [padding], 0, 1).view(-1)
    return images, flat, numels.cumsum(0) - numels


def _upload(images: List[torch.Tensor],
            device: torch.device) -> List[torch.Tensor]:
    """CPU tensors on ``device`` in one copy, each flattened."""
    if not images or device.type == 'cpu':
        return images
    numels = [image.numel() for image in images]
    flat = torch.cat([image.reshape(-1) for image in images])
    return list(flat.to(device, non_blocking=True).split_with_sizes(numels))


def _check_sizes(flat: torch.Tensor, images: List[torch.Tensor],
                 sizes: torch.Tensor, paths: List[str]) -> None:
    """Raise ``DataError`` naming the first image whose decoded size is not
    the batch index's, if the packed length shows one (no image's shape is
    read otherwise)."""
    numels = 3 * sizes.prod(1)
    if flat.numel() == int(numels.sum() + sizes[:, 1].max()):
        return
    for i, (image, numel) in enumerate(zip(images, numels.tolist())):
        if image.numel() != numel:
            height, width = sizes[i].tolist()
            raise DataError(
                f'{paths[i]}: decoded to {image.numel()} values, its size in '
                f'the batch index ({height} x {width}) gives {numel}')
