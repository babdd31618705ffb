# MoPro, ResNet-50, WebVision V0.5: a seeded random subset of V1.0 with as
# many images as ImageNet-1k (1.28M). The subset list is written once to
# data/webvision/info/ and reused by every later run.
_base_ = './mopro_r50_webvision_v1.py'

train_dataloader = dict(dataset=dict(subset_size=1281167, subset_seed=0))
