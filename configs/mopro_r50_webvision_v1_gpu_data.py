# MoPro, ResNet-50, WebVision V1.0 as configs/mopro_r50_webvision_v1.py, with
# the GPU data path: the dataloader workers read the files (and decode on
# the CPU only what the GPU decoder would not take: LoadWebImageBytes); the
# data preprocessor decodes each batch with nvjpeg and makes both views on
# the GPU with per-sample random parameters (MoProGPUViewsPreprocessor;
# README, Speed). It inherits the v1 config (model, schedule, hooks) and
# replaces only the training pipeline, the collate function, the workers
# and the preprocessor: mmengine refuses one key in two bases, so a
# separate dataset base could not sit beside the v1 config's.
_base_ = ['./mopro_r50_webvision_v1.py']

train_pipeline = [
    dict(type='LoadWebImageBytes'),
    dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
]
train_dataloader = dict(
    # reading and sniffing a file costs ~0.1 ms of CPU: 4 workers are plenty
    num_workers=4,
    # entries differ in size (bytes, or pixels of a CPU-decoded image)
    collate_fn=dict(type='pseudo_collate'),
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
        # fuse the per-batch colour work (one graph per view kind)
        compile_views=True))
