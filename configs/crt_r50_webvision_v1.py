# Classifier re-training (cRT, paper Section 4.3) on WebVision V1.0:
#   1. pretrain: configs/mopro_r50_webvision_v1.py
#   2. clean:    tools/noise_cleaning.py ... --out <pseudo_label.json>
#   3. this:     frozen encoder, classifier fine-tuned on the cleaned set
#                with square-root class sampling, 15 epochs, lr 0.01
#                x0.1 at 5 and 10 (8 GPUs x 32 = 256 images per step).
# Set the inputs with
#   --cfg-options model.init_cfg.checkpoint=CKPT \
#                 train_dataloader.dataset.pseudo_label_file=JSON
# The classifier starts from the pretrained one ("finetune the classifier";
# the released classifier_retrain.py loads it too) with weight decay 0.
_base_ = [
    '_base_/datasets/webvision_v1.py',
    '_base_/default_runtime.py',
    '_base_/runtime_gpu.py',
]

# switch: --cfg-options max_epochs=N (configs/README.md, Switches)
max_epochs = 15

pretrained = 'work_dirs/mopro_r50_webvision_v1/epoch_90.pth'
pseudo_label_file = 'work_dirs/mopro_r50_webvision_v1/pseudo_label.json'

model = dict(
    # ImageClassifier with the non-finite guard (NonFiniteCheckHook below)
    type='CompilableImageClassifier',
    # the encoder is fixed and only the linear classifier trains: not
    # compiled (the pretraining configs compile)
    compile=False,
    init_cfg=dict(
        type='MoProPretrained', checkpoint=pretrained,
        mapping=[('backbone.', 'backbone.'), ('classifier.', 'head.fc.')]),
    backbone=dict(
        type='ResNet',
        depth=50,
        zero_init_residual=False,
        frozen_stages=4,  # stem + all 4 stages: the encoder is fixed
        norm_eval=True,  # BatchNorm statistics fixed too
        init_cfg=None),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes={{_base_.num_classes}},
              in_channels=2048, loss=dict(type='CrossEntropyLoss',
                                          loss_weight=1.0), topk=(1, 5),
              init_cfg=None),
    data_preprocessor=dict(type='ClsDataPreprocessor',
                           num_classes={{_base_.num_classes}},
                           mean=[123.675, 116.28,
                                 103.53], std=[58.395, 57.12,
                                               57.375], to_rgb=True))

custom_hooks = [dict(type='NonFiniteCheckHook')]

# released dataloader_balance.py: random resized crop (scale 0.2-1) + flip
crt_train_pipeline = [
    dict(type='LoadWebImage'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,  # per GPU: 32 x 8 GPUs = 256
    sampler=dict(_delete_=True, type='SqrtBalancedSampler'),
    dataset=dict(_delete_=True, type='CleanedWebVision',
                 data_root={{_base_.data_root}},
                 pseudo_label_file=pseudo_label_file,
                 num_classes={{_base_.num_classes}},
                 pipeline=crt_train_pipeline))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[5, 10], gamma=0.1)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=256, enable=False)
