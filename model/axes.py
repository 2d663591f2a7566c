"""The three axes zhenping scores, in the order of the model's outputs.

This is the one place the names are written down; an exported model carries them
in its config and everything downstream reads them from the loaded model.
"""

AXES = ("warmth", "substance", "template")
LEVELS = 3  # levels run 0..LEVELS; score = level / LEVELS


def score_to_level(score: float) -> int:
    """Nearest level 0-3 for a score in [0, 1]."""
    return int(min(LEVELS, max(0, round(score * LEVELS))))
