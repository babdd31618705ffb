# Cross-entropy baseline, ResNet-50, WebVision V1.0, same schedule as MoPro.
_base_ = [
    '_base_/models/ce_r50.py',
    '_base_/datasets/webvision_v1.py',
    '_base_/schedules/webvision_sgd_90e.py',
    '_base_/default_runtime.py',
]

# one weak view, no momentum encoder
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadWebImage'),
        dict(type='RandomResizedCrop', scale=224,
             crop_ratio_range=(0.2, 1.0), backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
    ]))
