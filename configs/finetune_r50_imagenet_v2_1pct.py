# Low-resource fine-tuning on 1% of ImageNet for models pretrained on
# WebVision V2.0 (5000 classes; paper appendix): only the encoder is
# loaded, a new 1000-way classifier is initialised; lr 0.01, 50 epochs,
# lr x0.1 at epochs 20 and 40.
_base_ = ['finetune_r50_imagenet_1pct.py']

pretrained = 'work_dirs/mopro_r50_webvision_v2/epoch_90.pth'
model = dict(
    init_cfg=dict(checkpoint=pretrained, mapping=[('backbone.', 'backbone.')]),
    head=dict(
        init_cfg=dict(_delete_=True, type='Normal', layer='Linear', std=0.01)))
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[20, 40], gamma=0.1)
]
max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
