"""Learning-to-rank re-ranking of an adapter's candidates with LightGBM."""

from ._reranker import LightGBMReranker

__all__ = ["LightGBMReranker"]
