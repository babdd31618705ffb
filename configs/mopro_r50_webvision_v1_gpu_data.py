# MoPro, ResNet-50, WebVision V1.0 as configs/mopro_r50_webvision_v1.py, with
# the GPU data path: the dataloader workers read the files (and decode on
# the CPU only what the GPU decoder would not take: LoadWebImageBytes) and
# hand over each batch as one uint8 tensor; the data preprocessor decodes
# each batch with nvjpeg, one step ahead (DecodeAheadHook), and makes both
# views on the GPU with per-sample random parameters
# (MoProGPUViewsPreprocessor; README, The GPU data path). It inherits the v1
# config (model, schedule, hooks) and replaces only the training pipeline,
# the collate function, the workers and the preprocessor: mmengine refuses
# one key in two bases, so a separate dataset base could not sit beside the
# v1 config's.
_base_ = ['./mopro_r50_webvision_v1.py']

train_pipeline = [
    dict(type='LoadWebImageBytes'),
    # img_shape: the JPEG header's size, so that nothing waits for decoding
    # to know it
    dict(type='PackInputs', meta_keys=['img_shape', 'img_path']),
]
train_dataloader = dict(
    # reading and sniffing a file costs ~0.1 ms of CPU: 4 workers are plenty
    num_workers=4,
    # the batch's files as one uint8 tensor and the labels as one tensor
    collate_fn=dict(type='packed_images_collate'),
    # nvjpeg reads the bytes from host memory: nothing to pin
    pin_memory=False,
    dataset=dict(pipeline=train_pipeline))

# the views of configs/_base_/datasets/webvision_v1.py (the released code's)
model = dict(
    data_preprocessor=dict(
        type='MoProGPUViewsPreprocessor',
        crop_size=224,
        scale=(0.2, 1.0),
        flip_prob=0.5,
        gray_prob=0.2,
        jitter=(0.4, 0.4, 0.4, 0.4),
        # as model.channels_last (the v1 config's)
        channels_last=True,
        # fuse the per-batch colour work (one graph per view kind)
        compile_views=True))
default_hooks = dict(decode_ahead=dict(type='DecodeAheadHook'))
