# runtime_gpu.py, plus MoPro's channels-last convolutions on GPU (the queue
# and prototype arithmetic stays in float32).
_base_ = ['./runtime_gpu.py']

model = dict(channels_last=True)
