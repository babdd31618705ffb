"""What the workers hand to the GPU decoder
(mopro.datasets.transforms.jpeg_bytes): complete baseline JPEGs only."""
from mopro.datasets.transforms import baseline_jpeg_size
from helpers.gpu_views import REJECTED_BY_EVERY_DECODER, dirty_files, no_scan


def test_only_complete_baseline_jpegs_go_to_the_gpu_decoder():
    files = dirty_files()
    baseline = files.pop('baseline')
    assert baseline_jpeg_size(baseline) == (40, 48)
    files.update(no_scan=no_scan(baseline), rejected=REJECTED_BY_EVERY_DECODER)
    for name, data in files.items():
        assert baseline_jpeg_size(data) is None, name
