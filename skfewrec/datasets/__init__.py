"""Interaction datasets: MovieLens and Last.fm loaders, and a synthetic generator."""

from ._lastfm import load_lastfm
from ._movielens import load_movielens
from ._synthetic import make_interactions

__all__ = [
    "load_lastfm",
    "load_movielens",
    "make_interactions",
]
