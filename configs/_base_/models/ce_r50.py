# Cross-entropy baseline on the noisy web labels (the "CE" rows of the
# paper's tables): the same ResNet-50 encoder and linear classifier.
model = dict(
    # mmpretrain's ImageClassifier with MoPro's model.compile switch and
    # non-finite guard
    type='CompilableImageClassifier',
    compile=dict(backend='inductor', mode=None, dynamic=None),
    # a non-finite loss stops the run ('skip': zero loss, BN statistics
    # restored; max_consecutive_skips in a row stop it)
    nonfinite='raise',
    backbone=dict(type='ResNet', depth=50, zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=1000,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True))
# no checkpoint holds the weights of a non-finite step
custom_hooks = [dict(type='NonFiniteCheckHook')]
