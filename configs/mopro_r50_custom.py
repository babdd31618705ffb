# MoPro, ResNet-50, on your own images: the WebVision V1.0 recipe
# (configs/mopro_r50_webvision_v1.py: model, views, schedule) over the image
# lists of a folder (CustomImageList):
#
#   python tools/dataset_converters/folder_to_lists.py data/my_images
#   python tools/train.py configs/mopro_r50_custom.py \
#       --cfg-options data_root=data/my_images num_classes=<classes>
#
# folder_to_lists.py writes train.txt, val.txt (a held-out split per class)
# and classes.txt from data/my_images/<class name>/<image>. data_root and
# num_classes have no default: both must be given (configs/README.md,
# Switches), and they retarget both loaders and the model at once; so does
# max_epochs=N (lr steps stay at 40 and 80: move them with
# param_scheduler.0.milestones=[...]). Validation is the held-out split;
# there is no test set.
# From tar shards of train.txt (docs/shards.md): data_format=shards
# shard_root=<the folder of lists_to_shards.py's output>.
_base_ = ['./mopro_r50_webvision_v1.py']

data_root = None  # the folder of train.txt, val.txt, classes.txt
num_classes = None  # the lines of classes.txt

model = dict(num_classes=num_classes)

train_dataloader = dict(
    dataset=dict(_delete_=True, type='CustomImageList', data_root=data_root,
                 ann_file='train.txt', num_classes=num_classes,
                 pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(_delete_=True, type='CustomImageList', data_root=data_root,
                 ann_file='val.txt', num_classes=num_classes, test_mode=True,
                 pipeline={{_base_.test_pipeline}}))
# top-5 needs 5 classes or more: --cfg-options val_evaluator.topk=[1,5]
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = None
test_evaluator = None
test_cfg = None
