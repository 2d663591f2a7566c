"""zhenping inference: load a scorer, score comments.

Example:
    >>> from zhenping import Scorer
    >>> scorer = Scorer.from_pretrained()  # the shipped model in model/default  # doctest: +SKIP
    >>> scorer.score(["谢谢分享,挺有用的"])  # doctest: +SKIP
"""

from zhenping.model.scorer import DEFAULT_MODEL_DIR, CommentScores, ModelLoadError, Scorer, parity

__all__ = ["DEFAULT_MODEL_DIR", "CommentScores", "ModelLoadError", "Scorer", "parity"]
