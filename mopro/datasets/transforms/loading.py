"""Tolerant image decoding for dirty web data."""
import io
import os
import warnings

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageFile, UnidentifiedImageError


class ImageDecodeError(OSError):
    """An image file that cannot be decoded at all."""


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


def decode_rgb_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode the bytes of any image file into an H x W x 3 uint8 RGB array.

    Truncated JPEGs (common in WebVision) decode up to the cut; palette,
    grey, CMYK, alpha and 16-bit images are converted to RGB (16-bit values
    scaled to 8 bits).

    Raises:
        ImageDecodeError: empty or undecodable data, naming ``name``.
    """
    if len(data) == 0:
        raise ImageDecodeError(f'{name}: image file is empty (0 bytes)')
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # PIL's EXIF/palette chatter
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                    arr = np.asarray(img, dtype=np.float64)
                    scale = 257.0 if arr.max() > 255 else 1.0
                    img = Image.fromarray(
                        np.clip(arr / scale, 0, 255).astype(np.uint8))
                # convert() copies even an RGB image: skip it for those
                return np.asarray(img if img.mode == 'RGB' else
                                  img.convert('RGB'))
    except (UnidentifiedImageError, OSError, ValueError,
            Image.DecompressionBombError) as err:
        raise ImageDecodeError(f'{name}: cannot decode image ({err})') \
            from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_rgb(path: str) -> np.ndarray:
    """Decode any image file into an H x W x 3 uint8 RGB array (see
    :func:`decode_rgb_bytes`).

    Raises:
        ImageDecodeError: missing, empty or undecodable file, naming it.
    """
    return decode_rgb_bytes(read_image_bytes(path), path)


@TRANSFORMS.register_module()
class LoadWebImage(BaseTransform):
    """Load ``results['img_path']`` tolerantly (see :func:`decode_rgb`).

    Produces a BGR uint8 image like mmcv's ``LoadImageFromFile``, so the
    rest of an OpenMMLab pipeline is unchanged. An undecodable file raises
    :class:`ImageDecodeError`; the datasets of this project skip and count
    such files.
    """

    def transform(self, results: dict) -> dict:
        # cvtColor: a fraction of the cost of copying a channel-reversed view
        img = cv2.cvtColor(decode_rgb(results['img_path']), cv2.COLOR_RGB2BGR)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
