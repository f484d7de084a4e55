"""Loader for the MovieLens rating datasets (GroupLens), in their published layouts."""

import csv
import io

import numpy as np
import pandas as pd

from ._base import _find_layout, _make_bunch

_LAYOUTS = {
    "ml-100k": ("u.data", ["u.data", "u.item", "u.genre", "u.user"]),
    "ml-1m": ("ratings.dat", ["ratings.dat", "movies.dat", "users.dat"]),
    "ml-20m/25m/32m/latest/latest-small": ("ratings.csv", ["ratings.csv", "movies.csv"]),
}

# From the ml-1m README ("Occupation is chosen from the following choices").
_ML1M_OCCUPATIONS = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]

_RATING_DTYPES = {"user": np.int32, "item": np.int32, "value": np.float32, "timestamp": np.int64}

_LICENCE = (
    "MovieLens data (GroupLens Research, University of Minnesota) may be used for "
    "research but not redistributed; see the README shipped with the files."
)


def load_movielens(path, *, min_rating=None, binarize=False):
    """Load a MovieLens rating dataset from its extracted folder.

    The release is detected from the files present: ml-100k (``u.data``, ``u.item``,
    ``u.genre``, ``u.user``), ml-1m and ml-10m (``ratings.dat``, ``movies.dat``,
    ``users.dat``), or the CSV releases ml-20m, ml-25m, ml-32m, ml-latest and
    ml-latest-small (``ratings.csv``, ``movies.csv``). Movie and user files are
    optional: their features are None when they are absent.

    Parameters
    ----------
    path : str or path-like
        The folder holding the files, e.g. ``"data/ml-100k"``.
    min_rating : float, default=None
        Keep only ratings >= ``min_rating`` (4 gives the usual implicit positives).
    binarize : bool, default=False
        Replace the kept ratings by 1.0.

    Returns
    -------
    data : sklearn.utils.Bunch
        Dictionary-like object with:

        X : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Float32 ratings (or 1.0). Users and items without a kept rating are dropped.
        timestamps : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Int64 unix times, with the sparsity pattern of ``X``.
        user_ids, item_ids : ndarray
            Sorted raw user and movie ids: the rows and columns of ``X``.
        item_features : pandas.DataFrame or None
            Indexed by movie id in ``item_ids`` order: ``title`` and one 0/1 column
            ``genre_<name>`` per genre.
        user_features : pandas.DataFrame or None
            Indexed by user id in ``user_ids`` order: ``age`` (int; an age-bucket
            code in ml-1m), ``gender`` and ``occupation`` (categories). None for
            releases without user data.
        frame : pandas.DataFrame
            The kept ratings: columns ``user``, ``item``, ``value``, ``timestamp``.
        DESCR : str
            Description of the loaded data.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist or holds none of the known layouts; the message
        lists the files expected for each.

    See Also
    --------
    make_interactions : Synthetic data with the same structure, needing no download.

    Examples
    --------
    >>> from skfewrec.datasets import load_movielens
    >>> load_movielens("no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: Cannot load MovieLens: 'no/such/folder' does not exist. ...

    With the ml-100k folder at hand::

        data = load_movielens("ml-100k", min_rating=4, binarize=True)
        data.X  # users x movies with at least one rating >= 4, as 1.0
    """
    layout, path = _find_layout(path, _LAYOUTS, dataset="MovieLens")
    reader = {"ml-100k": _read_100k, "ml-1m": _read_1m}.get(layout, _read_csv)
    frame, item_features, user_features = reader(path)
    descr = f"MovieLens ratings ({layout} layout) read from {str(path)!r}. {_LICENCE}"
    return _make_bunch(
        frame,
        item_features=item_features,
        user_features=user_features,
        descr=descr,
        min_rating=min_rating,
        binarize=binarize,
    )


def _genre_columns(names):
    return [f"genre_{name}" for name in names]


def _read_100k(path):
    frame = pd.read_csv(
        path / "u.data",
        sep="\t",
        header=None,
        names=list(_RATING_DTYPES),
        dtype=_RATING_DTYPES,
        engine="c",
    )
    items = None
    if (path / "u.item").is_file():
        genres = _genre_columns(_read_100k_genres(path))
        items = pd.read_csv(
            path / "u.item",
            sep="|",
            header=None,
            encoding="latin-1",
            quoting=csv.QUOTE_NONE,
            usecols=[0, 1, *range(5, 5 + len(genres))],
            names=["item", "title", "release_date", "video_release_date", "url", *genres],
            dtype={"item": np.int32, "title": str, **dict.fromkeys(genres, np.int8)},
        ).set_index("item")
    users = None
    if (path / "u.user").is_file():
        users = pd.read_csv(
            path / "u.user",
            sep="|",
            header=None,
            usecols=[0, 1, 2, 3],
            names=["user", "age", "gender", "occupation", "zip_code"],
            dtype={
                "user": np.int32,
                "age": np.int64,
                "gender": "category",
                "occupation": "category",
            },
        ).set_index("user")
    return frame, items, users


def _read_100k_genres(path):
    genre_file = path / "u.genre"
    if genre_file.is_file():
        genres = pd.read_csv(
            genre_file, sep="|", header=None, names=["name", "code"], encoding="latin-1"
        ).dropna()
        return genres.sort_values("code")["name"].tolist()
    # u.genre is missing from some copies: these are the names it holds, in its order.
    return [
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
        "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
        "Romance", "Sci-Fi", "Thriller", "War", "Western",
    ]  # fmt: skip


def _read_1m(path):
    # "1::1193::5::978300760": splitting on ":" keeps the fast C parser (empty fields
    # sit between the doubled colons).
    frame = pd.read_csv(
        path / "ratings.dat",
        sep=":",
        header=None,
        usecols=[0, 2, 4, 6],
        names=["user", "_a", "item", "_b", "value", "_c", "timestamp"],
        dtype=_RATING_DTYPES,
        engine="c",
    )[list(_RATING_DTYPES)]
    items = None
    if (path / "movies.dat").is_file():
        movies = pd.read_csv(
            io.StringIO(_read_text(path / "movies.dat")),
            sep="::",
            engine="python",
            header=None,
            names=["item", "title", "genres"],
            quoting=csv.QUOTE_NONE,
            dtype={"item": np.int32, "title": str, "genres": str},
        )
        items = _with_genres(movies)
    users = None
    if (path / "users.dat").is_file():
        users = pd.read_csv(
            path / "users.dat",
            sep="::",
            engine="python",
            header=None,
            names=["user", "gender", "age", "occupation", "zip_code"],
            dtype={"user": np.int32, "gender": "category", "age": np.int64, "occupation": np.int64},
        ).set_index("user")
        occupation = pd.Categorical.from_codes(
            users["occupation"].where(users["occupation"].between(0, 20), 0),
            categories=_ML1M_OCCUPATIONS,
        )
        users = pd.DataFrame(
            {"age": users["age"], "gender": users["gender"], "occupation": occupation},
            index=users.index,
        )
    return frame, items, users


def _read_text(path):
    """Text of a small file: UTF-8 (ml-10m), else latin-1 (ml-1m)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_csv(path):
    frame = pd.read_csv(
        path / "ratings.csv",
        header=0,
        names=list(_RATING_DTYPES),
        usecols=[0, 1, 2, 3],
        dtype=_RATING_DTYPES,
        engine="c",
    )
    items = None
    if (path / "movies.csv").is_file():
        movies = pd.read_csv(
            path / "movies.csv",
            header=0,
            names=["item", "title", "genres"],
            dtype={"item": np.int32, "title": str, "genres": str},
            engine="c",
        )
        items = _with_genres(movies)
    return frame, items, None


def _with_genres(movies):
    """Title plus one 0/1 int8 column per genre from a ``a|b|c`` genres column."""
    genres = movies["genres"].fillna("").str.get_dummies(sep="|")
    genres = genres.drop(columns=["(no genres listed)"], errors="ignore").astype(np.int8)
    genres.columns = _genre_columns(genres.columns)
    items = pd.concat([movies[["item", "title"]], genres], axis=1)
    return items.set_index("item")
