# Low-resource fine-tuning on 10% of ImageNet for WebVision V2.0 models:
# new classifier, lr 0.01, 50 epochs, x0.1 at 20 and 40 (see the 1% file).
_base_ = ['finetune_r50_imagenet_v2_1pct.py']

train_dataloader = dict(
    dataset=dict(subset_file='data/imagenet/10percent.txt', fraction=0.1))
