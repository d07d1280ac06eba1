"""Sound event detection: the plain task and DCASE's recipe, each part in its module.

- ``task.py``: :class:`SoundEventDetection`, one decision per chunk (strong labels);
  at FRAME resolution it is
- ``recipe.py``: :class:`DetectionRecipe`, DCASE's recipe (strong, weak and unlabelled
  files; frame and clip outputs; augmentation; checkpoints kept by PSDS), whose parts are
- ``teacher.py``: the mean teacher and its consistency loss;
- ``mixing.py``: soundscapes mixed on the fly from isolated event clips;
- ``validation.py``: the development set's PSDS, which keeps the best checkpoint.
"""

from audiotask.tasks.sed.task import DCASE_CLASSES, DCASE_PROPORTIONS, SoundEventDetection
from audiotask.tasks.sed.recipe import DetectionRecipe  # registers itself as the FRAME task

__all__ = ["DCASE_CLASSES", "DCASE_PROPORTIONS", "DetectionRecipe", "SoundEventDetection"]
