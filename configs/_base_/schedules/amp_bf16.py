# bf16 autocast on GPU; tools/train.py falls back to a float32 OptimWrapper
# on CPU. bf16 has float32's exponent range, so gradients need no loss
# scaling: the scaler is off. mmengine's default (dynamic) GradScaler would
# unscale every gradient and read its found-inf flag on the host, a
# host-device sync, in every step.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False))
