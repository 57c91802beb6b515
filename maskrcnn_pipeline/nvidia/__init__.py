"""NVIDIA's own Mask R-CNN (DeepLearningExamples) as a second engine of the pipeline.

A run with ``engine: nvidia`` trains and evaluates with NVIDIA's code itself, in the image
built from containers/nvidia-maskrcnn.def; this package only speaks to that code from the
outside, and never imports torch:

- :mod:`.command`: the run's settings as NVIDIA config overrides, the exact ``torchrun
  tools/train_net.py`` / ``test_net.py`` command lines, and the settings their code cannot
  honour (checked when the config is validated);
- :mod:`.catalog`: the generated ``paths_catalog.py`` that registers the run's dataset
  splits under names their catalog accepts, and the checks made before training;
- :mod:`.logs`: their dllogger JSON lines as our ``metrics.jsonl`` records, final metrics
  and benchmark figures;
- :mod:`.predictions`: their ``bbox.json`` + ``segm.json`` as our ``predictions.json``.

NVIDIA's image runs Python 3.8 and our package needs 3.11, so everything here runs in the
pipeline's own environment, before or after the jobs that run in NVIDIA's image.
"""
