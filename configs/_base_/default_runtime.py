default_scope = 'mmpretrain'
custom_imports = dict(imports=['mopro'], allow_failed_imports=False)

default_hooks = dict(
    # mmengine's RuntimeInfoHook, minus its .item() of every logged value in
    # every iteration: the values reach the host when the logger reads them
    runtime_info=dict(type='DeferredRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # a kill at any moment leaves a complete checkpoint and last_checkpoint
    # pointing at it: atomic writes, outdated ones deleted after the new one
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=3,
                    backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # on CUDA, the CPU data path's next batch is copied to the GPU on a side
    # stream while the step before it runs (nothing on the CPU, nothing with
    # other data preprocessors). Here, not in runtime_gpu.py: mmengine
    # refuses default_hooks in two bases of one config
    copy_ahead=dict(type='CopyAheadHook'),
)
env_cfg = dict(
    cudnn_benchmark=True,
    # torch's CPU threads in the training process (MoProRunner): 'auto' is 1
    # on CUDA, where its CPU work is small and a pool of one thread per core
    # spins beside the dataloader workers, and torch's default (the cores)
    # on the CPU; or an integer. Dataloader workers run one thread each.
    intra_op_threads='auto',
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # a rank whose worker dies makes the others fail after this timeout
    # instead of hanging forever in a collective
    dist_cfg=dict(backend='nccl', timeout=1800),
)
vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')
]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
