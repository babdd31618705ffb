# Cross-entropy baseline on WebVision V0.5 (the same subset as MoPro's).
_base_ = './ce_r50_webvision_v1.py'

train_dataloader = dict(dataset=dict(subset_size=1281167, subset_seed=0))
