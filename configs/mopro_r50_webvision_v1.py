# MoPro, ResNet-50, WebVision V1.0 (paper Table 1), 8 GPUs x 32 images.
# Every value of the recipe (paper Section 4.2; released train.py) is set in
# this file; configs/README.md compares them with the paper and the released
# code. The bases hold what does not change what is learned: where the data
# is and how it is loaded (_base_/datasets/webvision_v1.py), hooks and
# logging (_base_/default_runtime.py), and the GPU switches: bf16 autocast,
# torch.compile, channels-last, the non-finite guard
# (_base_/runtime_gpu_mopro.py).
_base_ = [
    '_base_/datasets/webvision_v1.py',
    '_base_/default_runtime.py',
    '_base_/runtime_gpu_mopro.py',
]

# switch: --cfg-options max_epochs=N moves train_cfg.max_epochs (and an
# epoch-based scheduler's T_max/end) with it (configs/README.md, Switches)
max_epochs = 90

model = dict(
    type='MoPro',
    # encoder: ResNet-50, its 2048-d pooled features (Section 3.1); BN
    # weights initialised to 1 everywhere (released code)
    backbone=dict(type='ResNet', depth=50, zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    feat_dim=2048,
    # projection 2048 -> 2048 -> 128 to the normalised embedding z
    # (released code)
    proj_hidden_dim=2048,
    embed_dim=128,
    num_classes={{_base_.num_classes}},
    head=dict(
        type='MoProHead',
        temperature=0.1,  # tau
        proto_weight=1.0,  # lambda_pro (Eq. 3)
        inst_weight=1.0),  # lambda_ins
    queue_len=8192,  # R, momentum embeddings in the queue
    momentum=0.999,  # m of the momentum encoder
    proto_momentum=0.999,  # m of the momentum prototypes (Eq. 5)
    alpha=0.5,  # weight of the classifier in the soft label (Eq. 4)
    threshold=0.8,  # T, pseudo-label confidence
    # the momentum encoder's batch shuffled across GPUs (MoCo's shuffling
    # BN; released code)
    shuffle_bn=True,
    data_preprocessor=dict(type='MoProDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))

custom_hooks = [
    # L_pro from epoch 1; noise correction from epoch 11 (0-based), as in
    # the released code (the paper's text says a 10-epoch warm-up)
    dict(type='MoProHook', start_proto_epoch=1, start_clean_epoch=11),
]

# views as the released code's torchvision transforms: crop (scale 0.2-1)
# and flip for the encoder ...
weak_view = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
# ... and MoCo's colour changes for the momentum encoder. Colour jitter runs
# through torchvision on PIL images: mmcv's adjust_hue overflows under
# numpy 2 for negative hue factors.
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
    # both views stacked, the labels as one tensor per batch (MoPro's loss
    # takes it): a few tensors cross from the workers, not one per sample
    collate_fn=dict(type='multiview_collate'),
    dataset=dict(pipeline=train_pipeline))

# SGD, lr 0.1 for a total batch of 256, momentum 0.9, weight decay 1e-4;
# 90 epochs, lr x0.1 at 40 and 80
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[40, 80], gamma=0.1)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
# keep the paper's lr per image for another number of GPUs or batch size:
# enable with `--auto-scale-lr` in tools/train.py
auto_scale_lr = dict(base_batch_size=256, enable=False)
