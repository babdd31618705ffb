# Robustness (paper Section 5.4, Table 5) on ImageNet-A: natural adversarial
# examples of 200 ImageNet classes; accuracy and l2 calibration error.
#   python tools/test.py configs/robustness_r50_imagenet_a.py CKPT --sets test
_base_ = ['robustness_r50_imagenet_r.py']

test_dataloader = dict(
    dataset=dict(data_root='data/imagenet-a/', variant='imagenet-a'))
test_evaluator = dict(class_subset='imagenet-a')
