# The engineering switches of the GPU runs: speed, memory, and what a
# non-finite loss does. None of them changes the recipe; tools/train.py
# turns the GPU-only ones off on a CPU (mopro/engine/launch.py,
# adapt_to_device: model.compile=False, OptimWrapper in float32).

# bf16 autocast. bf16 has float32's exponent range, so gradients need no loss
# scaling: the scaler is off. mmengine's default (dynamic) GradScaler would
# unscale every gradient and read its found-inf flag on the host, a
# host-device sync, in every step.
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16',
                     loss_scale=dict(enabled=False))

model = dict(
    # torch.compile of the backbone(s) in place, with these torch.compile
    # arguments (e.g. --cfg-options model.compile.mode=max-autotune, or
    # model.compile=False)
    compile=dict(backend='inductor', mode=None, dynamic=None),
    # a non-finite loss stops the run ('skip': zero loss, BN statistics
    # restored; max_consecutive_skips in a row stop it)
    nonfinite='raise')
