# MoPro, ResNet-50, WebVision V2.0: 5000 classes, 16M images, T=0.6
# (paper Section 4.2). ImageNet validation does not apply (5000 classes):
# the test set is WebVision V2 validation too.
_base_ = './mopro_r50_webvision_v1.py'

num_classes = 5000
model = dict(num_classes=num_classes, threshold=0.6)
train_dataloader = dict(dataset=dict(num_classes=num_classes))
val_dataloader = dict(dataset=dict(num_classes=num_classes))
test_dataloader = dict(
    dataset=dict(_delete_=True, type='WebVision', data_root={{
        _base_.data_root
    }}, split='val', num_classes=num_classes, test_mode=True,
                 pipeline={{_base_.test_pipeline}}))
