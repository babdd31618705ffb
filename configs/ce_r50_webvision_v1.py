# Cross-entropy baseline, ResNet-50, WebVision V1.0: MoPro's schedule and
# encoder views (configs/mopro_r50_webvision_v1.py) without the momentum
# encoder, prototypes or noise correction; every value of its recipe is set
# in this file (configs/README.md).
_base_ = [
    '_base_/datasets/webvision_v1.py',
    '_base_/default_runtime.py',
    '_base_/runtime_gpu.py',
]

# switch: --cfg-options max_epochs=N (configs/README.md, Switches)
max_epochs = 90

# ResNet-50 encoder (BN weights initialised to 1, as MoPro's) and a linear
# classifier on its 2048-d features, trained on the noisy labels
model = dict(
    # mmpretrain's ImageClassifier with MoPro's model.compile switch and
    # non-finite guard (_base_/runtime_gpu.py sets both)
    type='CompilableImageClassifier',
    backbone=dict(type='ResNet', depth=50, zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes={{_base_.num_classes}},
              in_channels=2048, loss=dict(type='CrossEntropyLoss',
                                          loss_weight=1.0), topk=(1, 5)),
    data_preprocessor=dict(type='ClsDataPreprocessor',
                           num_classes={{_base_.num_classes}},
                           mean=[123.675, 116.28,
                                 103.53], std=[58.395, 57.12,
                                               57.375], to_rgb=True))
# no checkpoint holds the weights of a non-finite step
custom_hooks = [dict(type='NonFiniteCheckHook')]

# one weak view (crop, scale 0.2-1, and flip), no momentum encoder
train_dataloader = dict(
    batch_size=32,  # per GPU: 32 x 8 GPUs = 256
    dataset=dict(pipeline=[
        dict(type='LoadWebImage'),
        dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(
            0.2, 1.0), backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
    ]))

# as MoPro: SGD, lr 0.1 for a total batch of 256, momentum 0.9, weight
# decay 1e-4; 90 epochs, lr x0.1 at 40 and 80
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[40, 80], gamma=0.1)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=256, enable=False)
