# Low-resource fine-tuning on 1% of ImageNet (paper Section 5.2, Table 3),
# for models pretrained on WebVision V0.5 / V1.0: their 1000 classes are
# ImageNet's, so the whole model is fine-tuned, pretrained classifier
# included. SGD, batch 256 (8 GPUs x 32), momentum 0.9, weight decay 0,
# lr 0.005, 40 epochs, lr x0.2 at epochs 15 and 30 (the paper's schedule;
# the released finetune_imagenet.py defaults to 20 and 30).
# Subset: SimCLR's 1percent.txt when train_dataloader.dataset.subset_file is
# set (the default below), else a seeded random 1% (subset_file=None).
#   --cfg-options model.init_cfg.checkpoint=CKPT
_base_ = [
    '_base_/datasets/imagenet_val.py', '_base_/default_runtime.py',
    '_base_/runtime_gpu.py'
]

# switch: --cfg-options max_epochs=N (configs/README.md, Switches)
max_epochs = 40

pretrained = 'work_dirs/mopro_r50_webvision_v1/epoch_90.pth'
imagenet_root = 'data/imagenet/'

# the ResNet-50 classifier, initialised from a MoPro checkpoint: encoder
# and classifier
model = dict(
    # mmpretrain's ImageClassifier with MoPro's model.compile switch and
    # non-finite guard (_base_/runtime_gpu.py sets both)
    type='CompilableImageClassifier',
    init_cfg=dict(
        type='MoProPretrained', checkpoint=pretrained,
        mapping=[('backbone.', 'backbone.'), ('classifier.', 'head.fc.')]),
    backbone=dict(type='ResNet', depth=50, zero_init_residual=False,
                  init_cfg=None),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048,
              loss=dict(type='CrossEntropyLoss',
                        loss_weight=1.0), topk=(1, 5), init_cfg=None),
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=1000,
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))
# no checkpoint holds the weights of a non-finite step
custom_hooks = [dict(type='NonFiniteCheckHook')]

# released finetune_imagenet.py: RandomResizedCrop(224) (torchvision's
# scale (0.08, 1)) + flip; validation on ImageNet val
# (_base_/datasets/imagenet_val.py)
train_pipeline = [
    dict(type='LoadWebImage'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=False,
    sampler=dict(type='ResumableSampler', shuffle=True),  # exact --resume
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNetSubset', data_root=imagenet_root,
                 data_prefix='train',
                 subset_file=imagenet_root + '1percent.txt', fraction=0.01,
                 seed=0, pipeline=train_pipeline))
val_dataloader = {{_base_.test_dataloader}}
val_evaluator = {{_base_.test_evaluator}}

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[15, 30], gamma=0.2)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
auto_scale_lr = dict(base_batch_size=256, enable=False)
