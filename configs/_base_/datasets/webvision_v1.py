# WebVision V1.0 (Google + Flickr), 1000 classes; weak/strong views as in
# the released code's torchvision transforms. ImageNet validation is the
# test set (tools/test.py runs both).
_base_ = ['./imagenet_val.py']

dataset_type = 'WebVision'
data_root = 'data/webvision/'
num_classes = 1000
# the V2.0 download's lists hold 5000 classes: V1.0 keeps the first 1000
# (released code), logging how many lines it dropped; a label >= 5000 is an
# error naming its list and line
list_classes = 5000

# encoder input
weak_view = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
# momentum-encoder input. Colour jitter runs through torchvision on PIL
# images: mmcv's adjust_hue overflows under numpy 2 for negative hue factors.
strong_view = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
         backend='pillow'),
    dict(type='NumpyToPIL', to_rgb=True),
    dict(type='torchvision/RandomGrayscale', p=0.2),
    dict(type='torchvision/ColorJitter', brightness=0.4, contrast=0.4,
         saturation=0.4, hue=0.4),
    dict(type='PILToNumpy', to_bgr=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
train_pipeline = [
    dict(type='LoadWebImage'),
    dict(type='MultiView', num_views=[1, 1],
         transforms=[weak_view, strong_view]),
    dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
]

train_dataloader = dict(
    batch_size=32,  # per GPU: 32 x 8 GPUs = 256
    # one worker decodes and augments ~160 two-view images/s on the CPU of
    # benchmarks/data_loading_cpu.json: 8 feed ~1300 img/s per GPU; a GPU at
    # 2600 img/s needs ~16 (README, Speed)
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    # DefaultSampler's order; each sample's augmentation is seeded from
    # (seed, epoch, position), so --resume repeats the views of an
    # uninterrupted run whatever the workers (mopro/datasets/seeding.py)
    sampler=dict(type='ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        num_classes=num_classes,
        list_classes=list_classes,
        pipeline=train_pipeline))
# WebVision validation every epoch ...
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        num_classes=num_classes,
        list_classes=list_classes,
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
