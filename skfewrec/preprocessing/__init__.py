"""Turn interaction logs into matrices and weight them into confidences."""

from ._encoder import InteractionEncoder
from ._weighting import BM25Weighting, LogConfidence, TFIDFWeighting

__all__ = [
    "BM25Weighting",
    "InteractionEncoder",
    "LogConfidence",
    "TFIDFWeighting",
]
