from .collate import PackedImages, multiview_collate, packed_images_collate
from .custom_list import CustomImageList
from .file_list import ImageList, read_file_list
from .folder_lists import folder_to_lists
from .image_list_dataset import ImageListDataset
from .transforms import *  # noqa: F401,F403
from .webvision import ImageNetVal, WebVision

__all__ = [
    'ImageList', 'read_file_list', 'ImageListDataset', 'WebVision',
    'ImageNetVal', 'CustomImageList', 'folder_to_lists', 'PackedImages',
    'multiview_collate', 'packed_images_collate'
]
from .cleaned_webvision import CleanedWebVision  # noqa: F401,E402
from .imagenet_variants import ImageNet200  # noqa: F401,E402
from .samplers import ResumableSampler, SqrtBalancedSampler  # noqa: F401,E402
from .shards import ShardDataset  # noqa: F401,E402
from .subset import ImageNetSubset  # noqa: F401,E402
