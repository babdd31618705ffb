# MoPro, ResNet-50, WebVision V1.0 (paper Table 1): 8 GPUs x 32 images.
_base_ = [
    '_base_/models/mopro_r50.py',
    '_base_/datasets/webvision_v1.py',
    '_base_/schedules/webvision_sgd_90e.py',
    '_base_/default_runtime.py',
]

custom_hooks = [
    # L_pro from epoch 1; noise correction from epoch 11 (0-based), as in
    # the released code (the paper's text says a 10-epoch warm-up)
    dict(type='MoProHook', start_proto_epoch=1, start_clean_epoch=11),
]

# bf16 autocast (the schedule's AmpOptimWrapper) and channels-last
# convolutions on GPU; queue and prototype arithmetic stays in float32.
model = dict(channels_last=True)
# both views stacked, the labels as one tensor per batch (MoPro's loss takes
# it): a few tensors cross from the workers, not one per sample
train_dataloader = dict(collate_fn=dict(type='multiview_collate'))
