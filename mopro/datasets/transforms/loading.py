"""Tolerant image decoding for dirty web data."""
import io
import os
import threading
import warnings

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageFile, UnidentifiedImageError

from ...utils.validate import check_int

# Largest image decoded (width x height, read from the header before
# decoding): 2**26, about 67 megapixels or 192 MiB as RGB, well above web
# photos (a 24-megapixel camera image is about a third of it). A larger
# file (a 160 KB PNG can declare 13000 x 13000 pixels, 0.5 GB decoded) is
# skipped like an undecodable one.
DEFAULT_MAX_PIXELS = 2**26


class ImageDecodeError(OSError):
    """An image file that cannot be decoded at all."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than the limit."""


class _TolerantDecoding:
    """The process-wide settings of a tolerant decode, on while any thread
    decodes in :func:`decode_rgb_bytes`: PIL's ``LOAD_TRUNCATED_IMAGES``,
    and warnings ignored (PIL's EXIF and palette chatter). Restored when the
    last thread leaves: saving and restoring them per call (as
    ``warnings.catch_warnings`` does) lets one thread switch them back
    under another, or leave them on for good (the GPU data path decodes its
    fallbacks in a background thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decoding = 0
        self._saved = None

    def __enter__(self) -> None:
        with self._lock:
            if self._decoding == 0:
                self._saved = (ImageFile.LOAD_TRUNCATED_IMAGES,
                               warnings.catch_warnings())
                self._saved[1].__enter__()
                warnings.simplefilter('ignore')
                ImageFile.LOAD_TRUNCATED_IMAGES = True
            self._decoding += 1

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._decoding -= 1
            if self._decoding == 0:
                truncated, caught_warnings = self._saved
                caught_warnings.__exit__(None, None, None)
                ImageFile.LOAD_TRUNCATED_IMAGES = truncated


_TOLERANT_DECODING = _TolerantDecoding()


def read_image_bytes(path: str) -> bytearray:
    """The bytes of an image file, writable (for ``torch.frombuffer``).

    Raises:
        ImageDecodeError: missing or unreadable file, naming it.
    """
    if not os.path.isfile(path):
        raise ImageDecodeError(f'{path}: image file not found')
    try:
        with open(path, 'rb') as f:
            return bytearray(f.read())
    except OSError as err:
        raise ImageDecodeError(f'{path}: cannot read image file ({err})') \
            from None


def image_bytes(results: dict) -> bytearray:
    """The bytes of a sample's image: ``results['img_bytes']`` where the
    dataset read them (a shard record), else the file ``img_path``."""
    data = results.get('img_bytes')
    return read_image_bytes(results['img_path']) if data is None else data


def decode_rgb_bytes(data: bytes, name: str,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode the bytes of any image file into an H x W x 3 uint8 RGB array.

    Truncated JPEGs (common in WebVision) decode up to the cut; palette,
    grey, CMYK, alpha and 16-bit images are converted to RGB (16-bit values
    scaled to 8 bits).

    Raises:
        ImageDecodeError: empty or undecodable data, naming ``name``;
            :class:`ImageTooLargeError` for an image of more than
            ``max_pixels`` pixels, checked in its header before decoding.
    """
    if len(data) == 0:
        raise ImageDecodeError(f'{name}: image file is empty (0 bytes)')
    try:
        with _TOLERANT_DECODING, Image.open(io.BytesIO(data)) as img:
            _check_size(img, name, max_pixels)
            img.load()
            if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                arr = np.asarray(img, dtype=np.float64)
                scale = 257.0 if arr.max() > 255 else 1.0
                img = Image.fromarray(
                    np.clip(arr / scale, 0, 255).astype(np.uint8))
            # convert() copies even an RGB image: skip it for those
            return np.asarray(img if img.mode == 'RGB' else img.convert('RGB'))
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError,
            Image.DecompressionBombError) as err:
        raise ImageDecodeError(f'{name}: cannot decode image ({err})') \
            from None


def _check_size(img: Image.Image, name: str, max_pixels: int) -> None:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f'{name}: {width} x {height} image ({width * height / 1e6:.0f} '
            f'megapixels, {width * height * 3 / 2**30:.1f} GiB decoded) is '
            f'larger than max_pixels={max_pixels} of LoadWebImage')


def decode_rgb(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any image file into an H x W x 3 uint8 RGB array (see
    :func:`decode_rgb_bytes`).

    Raises:
        ImageDecodeError: missing, empty, undecodable or too large file,
            naming it.
    """
    return decode_rgb_bytes(read_image_bytes(path), path, max_pixels)


@TRANSFORMS.register_module()
class LoadWebImage(BaseTransform):
    """Load ``results['img_path']`` tolerantly (see :func:`decode_rgb`), or
    the bytes in ``results['img_bytes']`` where a shard dataset put them.

    Produces a BGR uint8 image like mmcv's ``LoadImageFromFile``, so the
    rest of an OpenMMLab pipeline is unchanged. An undecodable file, or one
    of more than ``max_pixels`` pixels (read from its header, before
    decoding), raises :class:`ImageDecodeError`; the datasets of this
    project skip and count such training images, with a warning naming the
    file.

    Args:
        max_pixels: largest width x height decoded
            (:data:`DEFAULT_MAX_PIXELS`).
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.max_pixels = check_int(max_pixels, 'LoadWebImage.max_pixels')

    def transform(self, results: dict) -> dict:
        # cvtColor: a fraction of the cost of copying a channel-reversed view
        img = cv2.cvtColor(
            decode_rgb_bytes(
                image_bytes(results), results['img_path'], self.max_pixels),
            cv2.COLOR_RGB2BGR)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
