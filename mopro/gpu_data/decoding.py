"""Decoding of a packed batch of JPEG bytes on the device, stream-safe.

Decoder: torchvision's ``decode_jpeg(list, device='cuda')`` (nvjpeg,
batched; the hardware JPEG engine of A100/H100/H200 for baseline JPEGs).
torchcodec, nvImageCodec and DALI wrap the same nvjpeg; none of them is a
dependency of this project, and torchvision's decoder is the one the rest
of the data path (and its tests against libjpeg) was measured with. Its
hazards are handled here instead:

- it allocates its outputs on the caller's current stream, then decodes on
  a pooled stream of its own that never waits for the caller's. PyTorch's
  caching allocator hands out a block freed on a stream at once (later use
  on that stream is ordered after the free), so the decoder could be
  handed memory that kernels queued on the training stream still read,
  and overwrite it (torchvision pull request "Fix CUDA decode_jpeg writing
  into memory the caller's stream is still using"; nvjpeg's hardware
  engine writes before queued work even on a waited stream, torchcodec
  pull request 1634). Here the decoder runs with a side stream current
  (:class:`SideStreams`) that is used for nothing but its outputs: every
  block in that stream's pool was freed after all its users had finished
  (they are handed over with ``record_stream``, so the allocator waits for
  their events before reusing a block), and the decoder cannot be handed
  memory that queued work still reads;
- it synchronises its stream before and after a call (the host waits for
  the whole decode): the preprocessor runs it one batch ahead in a
  background thread (:mod:`mopro.gpu_data.decode_ahead`); it re-creates
  its batched-decoder state per call, which stays a host cost there;
- it rejects a whole batch for one image it cannot decode: the batch is
  bisected (:func:`decode_isolating`) and the image that fails alone goes
  to the tolerant CPU decoder.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from torchvision.io import ImageReadMode, decode_jpeg

from mopro.datasets.collate import (HEIGHT, JPEG, KIND, NBYTES, OFFSET, WIDTH,
                                    PackedImages)
from mopro.datasets.transforms import (ImageDecodeError, decode_rgb_bytes,
                                       rgb_to_chw_tensor)
from mopro.models.utils.compile import out_of_memory
from .views import pack_images

Decode = Callable[[List[torch.Tensor]], List[torch.Tensor]]


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
            consumer waits for it, :meth:`SideStreams.hand_over`); None on
            the CPU.
    """
    flat: torch.Tensor
    offsets: torch.Tensor
    sizes: torch.Tensor
    bad: List[int]
    ready: Optional[object] = None


def decode_isolating(data: List[torch.Tensor],
                     decode: Decode) -> List[Optional[torch.Tensor]]:
    """``decode(data)``; where it raises, the halves of ``data`` are
    decoded on their own, down to the entries that fail alone (None).
    One bad entry of N costs about 2 log2(N) calls, not N; out-of-memory
    errors are raised."""
    try:
        return list(decode(data))
    except RuntimeError as err:
        if out_of_memory(err) is not None:
            raise
        if len(data) == 1:
            return [None]
    half = len(data) // 2
    return (decode_isolating(data[:half], decode) +
            decode_isolating(data[half:], decode))


class SideStreams:
    """The two side streams of the decoder on one CUDA device and the
    protocol around them:

    1. ``decode``: the decode stream waits for the consumer's, then the
       decoder runs with it current: its outputs are allocated there;
    2. ``pack``: the pack stream waits for the decode stream and records
       each decoded image (so their blocks return to the decode stream's
       pool only once packing has read them), then packs them there, and
       an event marks the end of the packing;
    3. ``hand_over``: the consumer waits for that event and records the
       packed tensor.

    The device and stream calls go through :meth:`on_device`, :meth:`use`,
    :meth:`record` and :meth:`event`, so the protocol runs on the CPU with
    stand-in streams in the tests.
    """

    def __init__(self, decode_stream, pack_stream,
                 device: torch.device) -> None:
        self.decode_stream = decode_stream
        self.pack_stream = pack_stream
        self.device = device

    @classmethod
    def for_device(cls, device: torch.device) -> 'SideStreams':
        return cls(
            torch.cuda.Stream(device), torch.cuda.Stream(device), device)

    def on_device(self):
        """The device made current (a background thread's is device 0)."""
        return torch.cuda.device(self.device)

    @contextmanager
    def use(self, stream) -> Iterator[None]:
        with torch.cuda.stream(stream):
            yield

    @staticmethod
    def record(tensor: torch.Tensor, stream) -> None:
        tensor.record_stream(stream)

    @staticmethod
    def event(stream):
        """An event recorded on ``stream`` now."""
        return stream.record_event()

    def decode(self, decode: Callable[[], list], consumer) -> list:
        """``decode()`` on the decode stream, after the consumer's work."""
        self.decode_stream.wait_stream(consumer)
        with self.use(self.decode_stream):
            return decode()

    def pack(self, decoded: Sequence[torch.Tensor],
             pack: Callable[[], tuple]) -> tuple:
        """``pack()`` (which reads ``decoded``) on the pack stream; its
        result and the event after it."""
        self.pack_stream.wait_stream(self.decode_stream)
        with self.use(self.pack_stream):
            for tensor in decoded:
                self.record(tensor, self.pack_stream)
            packed = pack()
        return packed, self.event(self.pack_stream)

    def hand_over(self, packed: torch.Tensor, ready, consumer) -> None:
        """Make ``packed`` (written before the event ``ready``) safe to use,
        and to free, on ``consumer``."""
        consumer.wait_event(ready)
        self.record(packed, consumer)


_STREAMS: Dict[torch.device, SideStreams] = {}


def side_streams(device: torch.device) -> SideStreams:
    """The process's :class:`SideStreams` of a CUDA device."""
    if device not in _STREAMS:
        _STREAMS[device] = SideStreams.for_device(device)
    return _STREAMS[device]


def cuda_device(device) -> torch.device:
    """``device`` with its index (the current device's if none)."""
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', torch.cuda.current_device())
    return device


def _decode_on(device: torch.device) -> Decode:

    def decode(data: List[torch.Tensor]) -> List[torch.Tensor]:
        out = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        return out if isinstance(out, list) else [out]

    return decode


def _decode_on_cpu(data: torch.Tensor, name: str) -> Optional[torch.Tensor]:
    """The tolerant CPU decoder's 3 x H x W image, or None."""
    try:
        return rgb_to_chw_tensor(
            decode_rgb_bytes(data.numpy().tobytes(), name))
    except ImageDecodeError as err:
        print_log(f'skipping undecodable image: {err}', logger='current',
                  level=30)
        return None


def decode_packed(packed: PackedImages, device, consumer=None,
                  streams: Optional[SideStreams] = None,
                  decode: Optional[Decode] = None) -> DecodedBatch:
    """Decode a batch of :class:`PackedImages` on ``device`` (CUDA: nvjpeg;
    CPU: libjpeg) into one flat tensor there.

    JPEGs go to the batched decoder (:func:`decode_isolating`); one that it
    rejects alone goes to the tolerant CPU decoder; pixels are uploaded as
    they are (one copy for all). An entry that nothing decodes is replaced
    by the first good one (listed in ``bad``); a batch with no good entry
    raises ``RuntimeError``.

    Args:
        consumer: on CUDA, the stream that will read the result (default:
            the current one); the result is handed over to it only by
            :meth:`SideStreams.hand_over`, called by the consumer.
        streams: on CUDA, the side streams (default: the device's).
        decode: the batched decoder (default: torchvision's on ``device``).
    """
    device = cuda_device(device)
    decode = decode or _decode_on(device)
    if device.type != 'cuda':
        images, bad = _decode_entries(packed, lambda work: work(), decode)
        return DecodedBatch(*_pack(images, device), bad)
    return decode_on_streams(packed, streams or side_streams(device), consumer
                             or torch.cuda.current_stream(device), decode)


def decode_on_streams(packed: PackedImages, streams: SideStreams, consumer,
                      decode: Decode) -> DecodedBatch:
    """:func:`decode_packed` on ``streams.device`` through the protocol of
    :class:`SideStreams`."""
    device = streams.device
    with streams.on_device():
        images, bad = _decode_entries(
            packed, lambda work: streams.decode(work, consumer), decode)
        decoded = [image for image in images if image.device == device]
        (flat, offsets,
         sizes), ready = streams.pack(decoded, lambda: _pack(images, device))
    return DecodedBatch(flat, offsets, sizes, bad, ready)


def _decode_entries(packed: PackedImages, run: Callable[[Callable[[], list]],
                                                        list],
                    decode: Decode) -> tuple:
    """The batch's 3 x H x W images (decoded JPEGs on the device, the rest
    on the CPU; undecodable ones replaced) and the replaced entries.
    ``run(f)`` runs the batched decode ``f`` (on the decode stream)."""
    rows = packed.index.tolist()
    data = packed.data
    entries = [data[row[OFFSET]:row[OFFSET] + row[NBYTES]] for row in rows]
    jpegs = [i for i, row in enumerate(rows) if row[KIND] == JPEG]
    decoded = run(lambda: decode_isolating([entries[i] for i in jpegs], decode)
                  ) if jpegs else []
    images: List[Optional[torch.Tensor]] = []
    results = dict(zip(jpegs, decoded))
    for i, row in enumerate(rows):
        if row[KIND] != JPEG:
            images.append(entries[i].view(3, row[HEIGHT], row[WIDTH]))
        elif results[i] is not None:
            images.append(results[i])
        else:
            images.append(_decode_on_cpu(entries[i], packed.paths[i]))
    bad = [i for i, image in enumerate(images) if image is None]
    if len(bad) == len(images):
        raise RuntimeError('no image of the batch could be decoded, first ' +
                           (packed.paths[0] or 'batch entry 0'))
    good = next(image for image in images if image is not None)
    return [good if image is None else image for image in images], bad


def _pack(images: List[torch.Tensor], device: torch.device) -> tuple:
    """:func:`pack_images` on ``device``; the images on the CPU are
    uploaded in one copy."""
    host = [image for image in images if image.device != device]
    if host:
        parts = iter(
            torch.cat([image.reshape(-1) for image in host]).to(
                device,
                non_blocking=True).split([image.numel() for image in host]))
        images = [
            image if image.device == device else next(parts).view(image.shape)
            for image in images
        ]
    return pack_images(images)
