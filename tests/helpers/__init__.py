"""What the tests share, imported as ``helpers`` (``tests/`` is on
``sys.path``: pytest puts the folder of the root ``conftest.py`` there).

- :mod:`helpers.data`: tiny image files and a fake WebVision tree;
- :mod:`helpers.configs`: tiny model configs, ``--cfg-options`` and
  configs loaded as the tools load them;
- :mod:`helpers.models`: a tiny MoPro model and batches for it;
- :mod:`helpers.mopro_reference`: an independent model of the released
  MoPro iteration;
- :mod:`helpers.gpu_views`: images, dirty web files and configs of the GPU
  data path;
- :mod:`helpers.training`: the v1 config shrunk to a CPU run;
- :mod:`helpers.commands`: the tools run as users run them;
- :mod:`helpers.host_reads`, :mod:`helpers.log_records`,
  :mod:`helpers.detectron2_hidden`: probes of host syncs, log lines and a
  process without detectron2;
- :mod:`helpers.kill_hook`: hooks that kill their training process
  (imported by training subprocesses as ``helpers.kill_hook``);
- :mod:`helpers.toy_runner`: a toy Runner with ``SafeCheckpointHook``;
- :mod:`helpers.diverge_hook`: a hook that makes one rank diverge (imported
  by training subprocesses as ``helpers.diverge_hook``).
"""
import os.path as osp

# the repository root
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
