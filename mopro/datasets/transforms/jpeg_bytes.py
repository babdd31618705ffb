"""Worker side of the GPU data path: read the bytes, decode on the CPU only
what the device's JPEG decoder would not take."""
from typing import Optional, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from .loading import decode_rgb_bytes, image_bytes

# start-of-frame markers other than SOF0/SOF1 (baseline and extended
# sequential Huffman): progressive, lossless, hierarchical, arithmetic.
# 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range but are not frames.
_OTHER_FRAMES = frozenset(range(0xC2, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length


def baseline_jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """``(height, width)`` if ``data`` is a complete baseline JPEG in YCbCr
    that a batched GPU decoder (nvjpeg) takes, else None.

    Reads the marker segments up to the first scan: SOI first, one SOF0 or
    SOF1 frame of 8-bit samples with 3 components and a known size, no
    Adobe marker declaring RGB-coded components, a start of scan after the
    frame, and EOI as the last two bytes (a truncated file never ends in
    EOI: 0xFF is stuffed in the entropy-coded data). Grey, CMYK/YCCK,
    progressive, arithmetic-coded and truncated JPEGs, headers without a
    scan (nvjpeg decodes those without an error, libjpeg and PIL refuse
    them), and anything else (PNG, GIF, ...) answer None.
    """
    if len(data) < 4 or data[:2] != b'\xff\xd8' or data[-2:] != b'\xff\xd9':
        return None
    pos, end = 2, len(data)
    size = None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: None if no frame came first
            return size
        if marker in (0xD8, 0xD9) or marker in _OTHER_FRAMES:
            return None  # a second SOI, or EOI before any scan
        if marker == 0xEE and data[pos + 4:pos + 9] == b'Adobe' and \
                pos + 15 < end and data[pos + 15] == 0:
            return None  # Adobe transform 0: RGB (or CMYK) components
        if marker in (0xC0, 0xC1):
            if size is not None or pos + 10 > end:
                return None  # a second frame, or a cut frame header
            precision, components = data[pos + 4], data[pos + 9]
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            if not (precision == 8 and components == 3 and height and width):
                return None
            size = (height, width)
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
    return None


def rgb_to_chw_tensor(rgb: np.ndarray) -> torch.Tensor:
    """An H x W x 3 array as a contiguous 3 x H x W tensor (its own copy:
    decoded arrays may be read-only)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


@TRANSFORMS.register_module()
class LoadWebImageBytes(BaseTransform):
    """Load ``results['img_path']`` (or a shard record's
    ``results['img_bytes']``) for decoding on the device.

    ``results['img']`` is a 1-D uint8 tensor of the file's bytes when the
    file is a baseline JPEG the GPU decoder takes (:func:`baseline_jpeg_size`;
    most of WebVision), decoded later, per batch, by
    ``MoProGPUViewsPreprocessor``; otherwise (PNG, GIF, grey, CMYK,
    progressive or truncated JPEG) it is the 3 x H x W uint8 RGB image,
    decoded here by the tolerant decoder of :class:`LoadWebImage`.
    ``results['img_shape']`` is the image's ``(height, width)``, from the
    JPEG header or the pixels. An undecodable file raises
    ``ImageDecodeError``, which the datasets of this project skip and count
    as with ``LoadWebImage``.

    Collate with ``packed_images_collate`` (``img_shape`` among
    ``PackInputs``' meta keys): the entries differ in size and kind.
    """

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        data = image_bytes(results)
        size = baseline_jpeg_size(data)
        if size is None:
            img = rgb_to_chw_tensor(decode_rgb_bytes(data, path))
            size = tuple(img.shape[1:])
        else:
            img = torch.frombuffer(data, dtype=torch.uint8)
        results['img'] = img
        results['img_shape'] = size
        results['ori_shape'] = size
        return results
