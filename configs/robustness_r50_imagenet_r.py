# Robustness to distribution shift (paper Section 5.4, Table 5): top-1
# accuracy and l2 calibration error of a WebVision V1.0 MoPro model on
# ImageNet-R (200 ImageNet classes; the 1000-way logits are restricted to
# them). The reliability diagram is written under the work dir.
#   python tools/test.py configs/robustness_r50_imagenet_r.py CKPT --sets test
_base_ = ['mopro_r50_webvision_v1.py']

robustness_root = 'data/imagenet-r/'
class_subset = 'imagenet-r'

test_dataloader = dict(
    dataset=dict(_delete_=True, type='ImageNet200', data_root=robustness_root,
                 variant=class_subset, test_mode=True,
                 pipeline={{_base_.test_pipeline}}))
test_evaluator = dict(_delete_=True, type='CalibratedAccuracy',
                      class_subset=class_subset, bin_size=100)
