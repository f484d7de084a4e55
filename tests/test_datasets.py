import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import data_path
from sklearn.decomposition import TruncatedSVD

import skfewrec.datasets
from skfewrec.datasets import load_lastfm, load_movielens, make_interactions

BUNCH_KEYS = {
    "X",
    "timestamps",
    "user_ids",
    "item_ids",
    "item_features",
    "user_features",
    "frame",
    "DESCR",
}


def _check_bunch(data):
    """The contract every loader honours."""
    assert set(data) == BUNCH_KEYS
    X = data.X
    assert isinstance(X, sp.csr_matrix) and X.dtype == np.float32 and X.has_canonical_format
    assert not np.any(X.data == 0)
    assert X.shape == (len(data.user_ids), len(data.item_ids))
    assert np.all(np.diff(data.user_ids) > 0) and np.all(np.diff(data.item_ids) > 0)
    assert np.all(X.getnnz(axis=0) > 0) and np.all(X.getnnz(axis=1) > 0)
    assert len(data.frame) == X.nnz
    if data.timestamps is not None:
        T = data.timestamps
        assert isinstance(T, sp.csr_matrix) and T.dtype in (np.int64, np.float64)
        np.testing.assert_array_equal(T.indptr, X.indptr)
        np.testing.assert_array_equal(T.indices, X.indices)
        assert list(data.frame.columns) == ["user", "item", "value", "timestamp"]
    else:
        assert list(data.frame.columns) == ["user", "item", "value"]
    for features, ids in [(data.item_features, data.item_ids), (data.user_features, data.user_ids)]:
        if features is not None:
            np.testing.assert_array_equal(features.index.to_numpy(), ids)
    # The frame and X hold the same interactions.
    rows = np.searchsorted(data.user_ids, data.frame["user"].to_numpy())
    cols = np.searchsorted(data.item_ids, data.frame["item"].to_numpy())
    np.testing.assert_array_equal(np.asarray(X[rows, cols]).ravel(), data.frame["value"])
    assert isinstance(data.DESCR, str) and data.DESCR


# make_interactions ------------------------------------------------------------------


def test_make_interactions_contract():
    data = make_interactions(n_users=300, n_items=120, random_state=0)
    _check_bunch(data)
    X = data.X
    assert X.shape == (300, 120)
    np.testing.assert_array_equal(data.user_ids, np.arange(300))
    assert X.getnnz(axis=1).min() >= 3
    assert X.data.min() >= 1 and np.all(X.data == np.round(X.data))
    assert X.nnz / (300 * 120) == pytest.approx(0.03, rel=0.25)
    assert data.item_features.columns.tolist() == ["category"]
    assert data.item_features["category"].between(0, 9).all()
    assert isinstance(data.user_features["cluster"].dtype, pd.CategoricalDtype)
    # Each user's events fall within their own active period, from mid-2017 on.
    assert data.timestamps.data.min() >= 1_500_000_000


def test_make_interactions_is_deterministic():
    a = make_interactions(n_users=200, n_items=80, random_state=7)
    b = make_interactions(n_users=200, n_items=80, random_state=7)
    c = make_interactions(n_users=200, n_items=80, random_state=8)
    assert (a.X != b.X).nnz == 0 and (a.timestamps != b.timestamps).nnz == 0
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.X.shape != c.X.shape or (a.X != c.X).nnz > 0
    rs = make_interactions(n_users=50, n_items=40, random_state=np.random.RandomState(1))
    gen = make_interactions(n_users=50, n_items=40, random_state=np.random.default_rng(1))
    assert rs.X.shape == gen.X.shape == (50, 40)


def test_make_interactions_without_timestamps():
    data = make_interactions(n_users=50, n_items=30, with_timestamps=False, random_state=0)
    assert data.timestamps is None
    _check_bunch(data)


def test_make_interactions_density_and_popularity():
    data = make_interactions(n_users=2000, n_items=400, density=0.05, random_state=1)
    assert data.X.nnz / (2000 * 400) == pytest.approx(0.05, rel=0.1)
    degree = np.sort(data.X.getnnz(axis=0))[::-1]
    # A long tail: the top 10% of items hold far more than 10% of the interactions.
    assert degree[:40].sum() > 0.3 * degree.sum()
    flat = make_interactions(
        n_users=2000, n_items=400, density=0.05, popularity_exponent=0.0, random_state=1
    )
    flat_degree = np.sort(flat.X.getnnz(axis=0))[::-1]
    assert flat_degree[:40].sum() < degree[:40].sum()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 5, "n_items": 3, "density": 1.0},
        {"n_users": 1, "n_items": 3},
        {"n_users": 20, "n_items": 1000, "density": 0.001, "n_clusters": 1, "n_components": 1},
        {"n_users": 30, "n_items": 40, "density": 0.9},
    ],
)
def test_make_interactions_edge_sizes(kwargs):
    data = make_interactions(random_state=0, **kwargs)
    _check_bunch(data)
    assert data.X.shape == (kwargs["n_users"], kwargs["n_items"])
    assert data.X.getnnz(axis=1).min() >= 3


def test_make_interactions_has_learnable_low_rank_structure():
    """A low-rank model beats most-popular on held-out users' hidden items."""
    data = make_interactions(n_users=1500, n_items=400, random_state=0)
    X = data.X.copy()
    X.data[:] = 1.0
    rng = np.random.default_rng(0)
    train, test = X[:1200], X[1200:].tocoo()
    hide = rng.random(test.nnz) < 0.5
    support = sp.csr_matrix((test.data[~hide], (test.row[~hide], test.col[~hide])), test.shape)
    query = sp.csr_matrix((test.data[hide], (test.row[hide], test.col[hide])), test.shape)
    V = TruncatedSVD(n_components=10, random_state=0).fit(train).components_
    popularity = np.asarray(train.sum(axis=0))

    def recall_at_10(scores):
        scores = np.where(support.toarray() > 0, -np.inf, scores)
        top = np.argsort(-scores, axis=1)[:, :10]
        hits = np.take_along_axis(query.toarray(), top, axis=1).sum(axis=1)
        denom = np.minimum(10, query.getnnz(axis=1))
        return (hits[denom > 0] / denom[denom > 0]).mean()

    low_rank = recall_at_10(np.asarray(support @ V.T @ V))
    most_popular = recall_at_10(np.repeat(popularity, 300, axis=0))
    assert low_rank > 1.15 * most_popular


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_users": 0}, ValueError, "n_users must be an int >= 1, got 0"),
        ({"n_users": 2.5}, TypeError, "n_users must be an int"),
        ({"n_items": 2}, ValueError, "n_items must be an int >= 3"),
        ({"n_components": 0}, ValueError, "n_components"),
        ({"n_clusters": 0}, ValueError, "n_clusters"),
        ({"density": 0.0}, ValueError, r"density must be in \(0, 1\]"),
        ({"density": 1.5}, ValueError, r"density must be in \(0, 1\]"),
        ({"density": float("nan")}, ValueError, "density"),
        ({"density": "high"}, TypeError, "density"),
        ({"popularity_exponent": -1}, ValueError, "popularity_exponent must be >= 0"),
        ({"with_timestamps": "yes"}, TypeError, "with_timestamps"),
        ({"random_state": "seed"}, ValueError, "seed"),
    ],
)
def test_make_interactions_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_interactions(**kwargs)


def test_public_api():
    assert skfewrec.datasets.__all__ == sorted(skfewrec.datasets.__all__)
    assert set(skfewrec.datasets.__all__) == {"load_lastfm", "load_movielens", "make_interactions"}


# load_movielens on small files written here (made-up titles, MovieLens layouts) ------


def _write_100k(folder):
    folder.mkdir()
    rows = [(1, 10, 5, 100), (1, 20, 3, 101), (2, 10, 4, 102), (3, 30, 2, 103), (2, 40, 4, 99)]
    (folder / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    genres = ["unknown", "Action", "Children's"]
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n")
    items = [(10, "Alpha (1990)", "010"), (20, "Béta (1991)", "001"), (30, "Gamma", "110")]
    items += [(40, "Delta", "000"), (50, "Unrated", "100")]
    lines = [f"{i}|{t}|01-Jan-1990||http://x|{'|'.join(f)}\n" for i, t, f in items]
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    users = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|32067"]
    (folder / "u.user").write_text("\n".join(users) + "\n")
    return folder


def _write_1m(folder):
    folder.mkdir()
    rows = ["1::10::5::100", "1::20::3::101", "2::10::4::102", "3::30::1::103"]
    (folder / "ratings.dat").write_text("\n".join(rows) + "\n")
    movies = ["10::Alpha: The Start (1990)::Action|Comedy", "20::Beta (1991)::Comedy"]
    movies += ["30::Café Gamma (1992)::Drama"]
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::0::1\n")
    return folder


def _write_csv(folder, with_movies=True):
    folder.mkdir()
    ratings = "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,3.5,101\n2,10,0.5,102\n"
    (folder / "ratings.csv").write_text(ratings)
    if with_movies:
        movies = 'movieId,title,genres\n10,"Alpha, The (1990)",Action|Sci-Fi\n'
        movies += "20,Beta (1991),(no genres listed)\n30,Unrated,Drama\n"
        (folder / "movies.csv").write_text(movies)
    return folder


def test_load_movielens_100k_layout(tmp_path):
    data = load_movielens(_write_100k(tmp_path / "ml-100k"))
    _check_bunch(data)
    np.testing.assert_array_equal(data.user_ids, [1, 2, 3])
    np.testing.assert_array_equal(data.item_ids, [10, 20, 30, 40])  # 50 has no rating
    np.testing.assert_array_equal(data.X.toarray(), [[5, 3, 0, 0], [4, 0, 0, 4], [0, 0, 2, 0]])
    assert data.timestamps[1, 3] == 99
    features = data.item_features
    assert features.columns.tolist() == [
        "title",
        "genre_unknown",
        "genre_Action",
        "genre_Children's",
    ]
    assert features.loc[20, "title"] == "Béta (1991)"
    assert features.loc[30, ["genre_unknown", "genre_Action"]].tolist() == [1, 1]
    assert all(pd.api.types.is_integer_dtype(features[c]) for c in features.columns[1:])
    users = data.user_features
    assert users.columns.tolist() == ["age", "gender", "occupation"]
    assert users.loc[2, "age"] == 53 and users.loc[2, "occupation"] == "other"
    assert isinstance(users["gender"].dtype, pd.CategoricalDtype)


def test_load_movielens_min_rating_and_binarize(tmp_path):
    folder = _write_100k(tmp_path / "ml-100k")
    data = load_movielens(folder, min_rating=4)
    _check_bunch(data)
    np.testing.assert_array_equal(data.user_ids, [1, 2])  # user 3 only rated 2
    np.testing.assert_array_equal(data.item_ids, [10, 40])
    np.testing.assert_array_equal(data.X.toarray(), [[5, 0], [4, 4]])
    np.testing.assert_array_equal(data.item_features.index, [10, 40])
    np.testing.assert_array_equal(data.user_features.index, [1, 2])
    binary = load_movielens(folder, min_rating=4, binarize=True)
    np.testing.assert_array_equal(binary.X.toarray(), [[1, 0], [1, 1]])
    assert binary.frame["value"].eq(1.0).all()
    with pytest.raises(ValueError, match="No interaction is left.*min_rating=6"):
        load_movielens(folder, min_rating=6)
    with pytest.raises(TypeError, match="min_rating must be a number"):
        load_movielens(folder, min_rating="4")


def test_load_movielens_1m_layout(tmp_path):
    data = load_movielens(_write_1m(tmp_path / "ml-1m"))
    _check_bunch(data)
    np.testing.assert_array_equal(data.X.toarray(), [[5, 3, 0], [4, 0, 0], [0, 0, 1]])
    features = data.item_features
    assert features.loc[10, "title"] == "Alpha: The Start (1990)"
    assert features.columns.tolist() == ["title", "genre_Action", "genre_Comedy", "genre_Drama"]
    assert features.loc[10, ["genre_Action", "genre_Comedy", "genre_Drama"]].tolist() == [1, 1, 0]
    users = data.user_features
    assert users.loc[1, "occupation"] == "K-12 student" and users.loc[2, "age"] == 56
    assert users.loc[3, "occupation"] == "other"
    assert features.loc[30, "title"] == "Café Gamma (1992)"  # latin-1 file


def test_load_movielens_10m_layout_utf8_without_users(tmp_path):
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::4.5::100\n2::10::3::101\n")
    (folder / "movies.dat").write_text("10::Café (1990)::Comedy\n", encoding="utf-8")
    data = load_movielens(folder)
    _check_bunch(data)
    assert data.user_features is None
    assert data.item_features.loc[10, "title"] == "Café (1990)"
    np.testing.assert_allclose(data.X.toarray(), [[4.5], [3.0]])


def test_load_movielens_csv_layout(tmp_path):
    data = load_movielens(_write_csv(tmp_path / "ml-latest-small"))
    _check_bunch(data)
    assert data.user_features is None
    np.testing.assert_allclose(data.X.toarray(), [[4.0, 3.5], [0.5, 0]])
    features = data.item_features
    assert features.loc[10, "title"] == "Alpha, The (1990)"
    assert "genre_(no genres listed)" not in features.columns
    assert features.loc[20].drop("title").sum() == 0
    assert load_movielens(tmp_path / "ml-latest-small", min_rating=4).X.nnz == 1


def test_load_movielens_without_movie_file(tmp_path):
    data = load_movielens(_write_csv(tmp_path / "ratings-only", with_movies=False))
    assert data.item_features is None
    _check_bunch(data)


def test_load_movielens_missing_path_lists_expected_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_movielens(missing)
    message = str(err.value)
    assert str(missing) in message and "does not exist" in message
    for name in ["u.data", "u.item", "ratings.dat", "movies.dat", "ratings.csv", "movies.csv"]:
        assert name in message
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "tags.csv").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"holds none of the known layouts.*tags\.csv"):
        load_movielens(tmp_path / "wrong")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_movielens(tmp_path / "wrong" / "tags.csv")


# load_lastfm -----------------------------------------------------------------------


def test_load_lastfm(tmp_path):
    folder = tmp_path / "hetrec2011-lastfm-2k"
    folder.mkdir()
    plays = "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n4\t51\t7\n4\t90\t1\n"
    (folder / "user_artists.dat").write_text(plays)
    data = load_lastfm(folder)
    _check_bunch(data)
    assert data.timestamps is None and data.item_features is None and data.user_features is None
    np.testing.assert_array_equal(data.X.toarray(), [[13883, 11690, 0], [7, 0, 1]])
    artists = 'id\tname\turl\tpictureURL\n51\tThe "Quoted" Band\thttp://a\thttp://b\n'
    artists += "52\tSigur Rós\thttp://c\thttp://d\n77\tUnplayed\thttp://e\thttp://f\n"
    (folder / "artists.dat").write_text(artists, encoding="utf-8")
    data = load_lastfm(folder)
    assert data.item_features.columns.tolist() == ["name"]
    assert data.item_features.loc[51, "name"] == 'The "Quoted" Band'
    assert data.item_features.loc[52, "name"] == "Sigur Rós"
    assert pd.isna(data.item_features.loc[90, "name"])  # played, but not in artists.dat


def test_load_lastfm_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*nope' does not exist.*user_artists\.dat"):
        load_lastfm(tmp_path / "nope")


# Real MovieLens files (never copied into the repository) ----------------------------


def _real(name):
    return data_path(name)


@pytest.mark.realdata
def test_real_ml_100k():
    folder = _real("ml-100k")
    data = load_movielens(folder)
    _check_bunch(data)
    assert data.X.shape == (943, 1682) and data.X.nnz == 100_000
    assert set(np.unique(data.X.data)) == {1, 2, 3, 4, 5}
    genres = [c for c in data.item_features.columns if c.startswith("genre_")]
    assert len(genres) == 19 and "genre_Film-Noir" in genres
    assert data.item_features.loc[1, "title"] == "Toy Story (1995)"
    assert data.user_features.columns.tolist() == ["age", "gender", "occupation"]
    assert data.user_features["occupation"].nunique() == 21

    raw = pd.read_csv(folder / "u.data", sep="\t", names=["user", "item", "rating", "time"])
    positives = raw[raw["rating"] >= 4]
    implicit = load_movielens(folder, min_rating=4, binarize=True)
    _check_bunch(implicit)
    assert implicit.X.nnz == len(positives)
    assert implicit.X.shape == (positives["user"].nunique(), positives["item"].nunique())
    assert np.all(implicit.X.data == 1.0)


@pytest.mark.realdata
def test_real_ml_latest_small():
    folder = _real("ml-latest-small")
    data = load_movielens(folder)
    _check_bunch(data)
    assert data.X.shape == (610, 9724) and data.X.nnz == 100_836
    assert data.user_features is None
    assert data.timestamps.dtype == np.int64
    assert "genre_(no genres listed)" not in data.item_features.columns
