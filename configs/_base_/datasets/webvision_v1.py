# WebVision V1.0 (Google + Flickr), 1000 classes: where the data is and how
# it is loaded. The views (augmentation recipes) and the batch size are the
# recipe's: each config sets them. ImageNet validation is the test set
# (tools/test.py runs both).
_base_ = ['./imagenet_val.py']

dataset_type = 'WebVision'
# switches: --cfg-options data_root=... num_classes=... retarget every
# loader set from them (configs/README.md, Switches)
data_root = 'data/webvision/'
num_classes = 1000
# switch: --cfg-options data_format=shards shard_root=<folder> trains from
# the tar shards tools/dataset_converters/lists_to_shards.py wrote into
# <folder> in place of the image lists; validation and test keep reading
# the lists under data_root unless shard_indexes names their index too
# (shard_indexes.val=val-index.json; docs/shards.md)
data_format = 'lists'
shard_root = None
shard_indexes = dict(train='train-index.json')
# the V2.0 download's lists hold 5000 classes: V1.0 keeps the first 1000
# (released code), logging how many lines it dropped; a label >= 5000 is an
# error naming its list and line
list_classes = 5000

train_dataloader = dict(
    # one worker decodes and augments ~160 two-view images/s on the CPU of
    # benchmarks/data_loading_cpu.json: 8 feed ~1300 img/s per GPU; a GPU at
    # 2600 img/s needs ~16 (README, Speed)
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    # DefaultSampler's order; each sample's augmentation is seeded from
    # (seed, epoch, position), so --resume repeats the views of an
    # uninterrupted run whatever the workers (mopro/datasets/seeding.py)
    sampler=dict(type='ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 num_classes=num_classes, list_classes=list_classes))
# WebVision validation every epoch ...
val_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler',
                 shuffle=False), collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 num_classes=num_classes, list_classes=list_classes,
                 test_mode=True, pipeline={{_base_.test_pipeline}}))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
val_cfg = dict()
