# Low-resource fine-tuning on 10% of ImageNet (paper Section 5.2, Table 3),
# WebVision V0.5 / V1.0 models; schedule as for 1%. SimCLR's 10percent.txt,
# or a seeded random 10% with train_dataloader.dataset.subset_file=None.
_base_ = ['finetune_r50_imagenet_1pct.py']

train_dataloader = dict(
    dataset=dict(subset_file='data/imagenet/10percent.txt', fraction=0.1))
