# ImageNet-1k validation (50,000 images, 1000 classes): the test set of the
# WebVision V1.0 / V0.5 configs (their classes are ImageNet's) and the
# validation set of ImageNet fine-tuning. ``test_pipeline`` (resize 256,
# centre crop 224, as the released code) is every evaluation's transform.
imagenet_root = 'data/imagenet/'
test_pipeline = [
    dict(type='LoadWebImage'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
]
test_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler',
                 shuffle=False), collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNetVal', data_root=imagenet_root,
                 data_prefix='val', num_classes=1000, test_mode=True,
                 pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
test_cfg = dict()
