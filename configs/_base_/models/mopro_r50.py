# MoPro with a ResNet-50 encoder (paper Section 4.2; released code defaults).
model = dict(
    type='MoPro',
    backbone=dict(
        type='ResNet',
        depth=50,
        # the released code initialises BN weights to 1 everywhere
        zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='MoProHead',
        temperature=0.1,  # tau
        proto_weight=1.0,  # lambda_pro
        inst_weight=1.0),  # lambda_ins
    num_classes=1000,
    feat_dim=2048,
    embed_dim=128,  # low-dimensional embedding z
    proj_hidden_dim=2048,
    queue_len=8192,  # R
    momentum=0.999,  # momentum encoder
    proto_momentum=0.999,  # prototypes
    alpha=0.5,  # weight of the classifier in the soft label
    threshold=0.8,  # T, pseudo-label confidence
    shuffle_bn=True,
    channels_last=False,
    nonfinite='raise',
    # torch.compile of both backbones, with these torch.compile arguments
    # (e.g. --cfg-options model.compile.mode=max-autotune, or
    # model.compile=False); adapt_to_device (tools/train.py) turns it off
    # without CUDA
    compile=dict(backend='inductor', mode=None, dynamic=None),
    data_preprocessor=dict(
        type='MoProDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True))
