# Cross-entropy baseline of the demo: ResNet-18 + linear classifier trained
# directly on the noisy digit labels, with the data, weak augmentation and
# schedule of configs/mopro_r18_demo.py (inherited from it).
_base_ = ['./mopro_r18_demo.py']

model = dict(
    _delete_=True, type='CompilableImageClassifier', compile=False,
    nonfinite='raise', backbone=dict(type='ResNet', depth=18,
                                     zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes={{_base_.num_classes}},
              in_channels=512, loss=dict(type='CrossEntropyLoss',
                                         loss_weight=1.0), topk=(1, )),
    data_preprocessor=dict(type='ClsDataPreprocessor',
                           num_classes={{_base_.num_classes}},
                           mean=[123.675, 116.28,
                                 103.53], std=[58.395, 57.12,
                                               57.375], to_rgb=True))

# no MoPro phases; no checkpoint of a non-finite step
custom_hooks = [dict(type='NonFiniteCheckHook')]

# one weak view, no momentum encoder; DataSamples for the classifier's head
# (MoPro's configs hand over the labels as one tensor)
train_dataloader = dict(
    collate_fn=dict(type='default_collate'), dataset=dict(pipeline=[
        dict(type='LoadWebImage'),
        {{_base_.weak_crop}},
        dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
    ]))
