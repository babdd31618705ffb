# SGD, lr 0.1 for a total batch of 256, 90 epochs, x0.1 at 40 and 80
# (paper Section 4.2; released train.py defaults).
_base_ = ['./amp_bf16.py']

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[40, 80], gamma=0.1)
]
train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# keep the paper's lr per image for another number of GPUs or batch size:
# enable with `--auto-scale-lr` in tools/train.py
auto_scale_lr = dict(base_batch_size=256, enable=False)
