# Cross-entropy baseline on WebVision V2.0 (5000 classes).
_base_ = './ce_r50_webvision_v1.py'

num_classes = 5000
model = dict(
    head=dict(num_classes=num_classes),
    data_preprocessor=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(num_classes=num_classes))
val_dataloader = dict(dataset=dict(num_classes=num_classes))
test_dataloader = dict(
    dataset=dict(_delete_=True, type='WebVision', data_root={{
        _base_.data_root
    }}, split='val', num_classes=num_classes, test_mode=True,
                 pipeline={{_base_.test_pipeline}}))
