"""Speed benchmarks of the training step and the data paths (the code of
``tools/analysis_tools/benchmark*.py``)."""
