"""A strict reader of LightGBM's model text, so that LightGBM's own parser never sees a bad one.

LightGBM's C++ parser aborts the process (SIGABRT, SIGSEGV, SIGFPE) on many
malformed model texts and loops forever on a tree whose children form a cycle.
:func:`canonical_model_text` parses the text with a grammar of its own, checks
every count, index and number, and writes back a canonical text holding only what
it checked (the header, the trees, ``end of trees``). Only that text is handed to
LightGBM. Anything it does not fully understand is refused with a ``ValueError``.
"""

import math
import re

#: LightGBM's integers and decimal numbers (no nan/inf, no hex, bounded exponents)
_INT = re.compile(r"-?[0-9]{1,10}\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?\Z")
_FEATURE_NAME = re.compile(r"[^\s\",:\[\]{}=]{1,256}\Z")  # what LightGBM allows, no "="
_OBJECTIVE = re.compile(
    r"(?:lambdarank|rank_xendcg|regression|binary sigmoid:[0-9]+(?:\.[0-9]+)?)\Z"
)
_CATEGORIES = re.compile(r"-?[0-9]{1,10}(?::-?[0-9]{1,10})*\Z")

_MAX_FEATURES = 100_000
_MAX_LEAVES = 131_072
_MAX_TREES = 100_000
_MAX_CATEGORY_WORDS = 1 << 20
#: a leaf value beyond this would let a sum over trees overflow a double
_MAX_LEAF_VALUE = 1e15

_HEADER_KEYS = (
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "feature_names",
    "feature_infos",
)
#: header keys read but not passed on (LightGBM recomputes or does not need them)
_DROPPED_HEADER_KEYS = ("tree_sizes",)

_TREE_REQUIRED = ("num_leaves", "num_cat", "leaf_value")
_TREE_SPLITS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
#: optional per-node statistics: key -> (per leaf or per internal node, kind)
_TREE_OPTIONAL = {
    "split_gain": ("internal", "float"),
    "internal_value": ("internal", "float"),
    "internal_weight": ("internal", "float"),
    "internal_count": ("internal", "count"),
    "leaf_weight": ("leaf", "float"),
    "leaf_count": ("leaf", "count"),
}
_TREE_KEYS = {
    *_TREE_REQUIRED,
    *_TREE_SPLITS,
    *_TREE_OPTIONAL,
    "cat_boundaries",
    "cat_threshold",
    "is_linear",
    "shrinkage",
}


def _fail(where, what):
    raise ValueError(f"LightGBM model text, {where}: {what}")


def _ints(text, where, low, high):
    tokens = text.split(" ") if text else []
    out = []
    for token in tokens:
        if not _INT.match(token) or not low <= int(token) <= high:
            _fail(where, f"{token[:40]!r} is not an integer in [{low}, {high}].")
        out.append(int(token))
    return out


def _floats(text, where, bound=math.inf):
    tokens = text.split(" ") if text else []
    for token in tokens:
        ok = _FLOAT.match(token)
        value = float(token) if ok else math.nan
        if not (ok and math.isfinite(value) and abs(value) <= bound):
            _fail(where, f"{token[:40]!r} is not a finite number (at most {bound:g} in size).")
    return tokens


def _key_values(lines, where, allowed):
    fields = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or key not in allowed:
            _fail(where, f"unexpected line {line[:60]!r}.")
        if key in fields:
            _fail(where, f"{key} is given twice.")
        fields[key] = value
    return fields


def _header(fields):
    for key in _HEADER_KEYS:
        if key not in fields:
            _fail("header", f"{key}= is missing.")
    if fields["version"] not in ("v3", "v4"):
        _fail("header", f"version {fields['version'][:20]!r} is not v3 or v4.")
    for key in ("num_class", "num_tree_per_iteration"):
        if fields[key] != "1":
            _fail("header", f"{key}={fields[key][:20]} (only single-output models are read).")
    if fields["label_index"] != "0":
        _fail("header", "label_index must be 0.")
    (max_idx,) = _ints(fields["max_feature_idx"], "max_feature_idx", 0, _MAX_FEATURES - 1)
    n_features = max_idx + 1
    if not _OBJECTIVE.match(fields["objective"]):
        _fail("header", f"objective {fields['objective'][:40]!r} is not one this reader knows.")
    names = fields["feature_names"].split(" ")
    if len(names) != n_features or not all(_FEATURE_NAME.match(n) for n in names):
        _fail("feature_names", f"expected {n_features} plain names.")
    infos = fields["feature_infos"].split(" ")
    if len(infos) != n_features:
        _fail("feature_infos", f"expected {n_features} entries, got {len(infos)}.")
    for info in infos:
        if info == "none" or _CATEGORIES.match(info):
            continue
        low, sep, high = info[1:-1].partition(":")
        if not (info.startswith("[") and info.endswith("]") and sep):
            _fail("feature_infos", f"entry {info[:40]!r} is not understood.")
        _floats(f"{low} {high}", "feature_infos")
    return n_features


def _check_structure(left, right, n_leaves, where):
    """The children must form one tree rooted at node 0: no cycle, nothing shared."""
    n_internal = n_leaves - 1
    children = left + right
    internal = sorted(c for c in children if c >= 0)
    leaves = sorted(~c for c in children if c < 0)
    if internal != list(range(1, n_internal)) or leaves != list(range(n_leaves)):
        _fail(where, "left_child/right_child do not name every node and leaf exactly once.")
    seen, stack = 0, [0]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > n_internal:
            _fail(where, "left_child/right_child form a cycle.")
        stack.extend(c for c in (left[node], right[node]) if c >= 0)
    if seen != n_internal:
        _fail(where, "left_child/right_child form a cycle (some nodes are unreachable).")


def _tree(fields, n_features, where):
    """Check one ``Tree=`` block; return its canonical lines."""
    for key in _TREE_REQUIRED:
        if key not in fields:
            _fail(where, f"{key}= is missing.")
    (n_leaves,) = _ints(fields["num_leaves"], f"{where} num_leaves", 1, _MAX_LEAVES)
    n_internal = n_leaves - 1
    (num_cat,) = _ints(fields["num_cat"], f"{where} num_cat", 0, n_internal)
    leaf_value = _floats(fields["leaf_value"], f"{where} leaf_value", _MAX_LEAF_VALUE)
    if len(leaf_value) != n_leaves:
        _fail(where, f"leaf_value has {len(leaf_value)} values for {n_leaves} leaves.")
    if fields.get("is_linear", "0") != "0":
        _fail(where, "linear trees are not read.")
    lines = [f"num_leaves={n_leaves}", f"num_cat={num_cat}"]
    if n_leaves > 1:
        lines += _splits(fields, n_leaves, num_cat, n_features, where)
    elif any(fields.get(key) for key in (*_TREE_SPLITS, "cat_boundaries", "cat_threshold")):
        _fail(where, "a tree with one leaf has splits.")
    lines.append("leaf_value=" + " ".join(leaf_value))
    for key, (per, kind) in _TREE_OPTIONAL.items():
        if not fields.get(key) or n_leaves == 1:
            continue
        expected = n_leaves if per == "leaf" else n_internal
        if kind == "count":
            values = [str(v) for v in _ints(fields[key], f"{where} {key}", 0, 2**31 - 1)]
        else:
            values = _floats(fields[key], f"{where} {key}")
        if len(values) != expected:
            _fail(where, f"{key} has {len(values)} values, expected {expected}.")
        lines.append(f"{key}=" + " ".join(values))
    lines.append("is_linear=0")
    if "shrinkage" in fields:
        lines.append("shrinkage=" + " ".join(_floats(fields["shrinkage"], f"{where} shrinkage")))
    return lines


def _splits(fields, n_leaves, num_cat, n_features, where):
    n_internal = n_leaves - 1
    for key in _TREE_SPLITS:
        if key not in fields:
            _fail(where, f"{key}= is missing.")
    feature = _ints(fields["split_feature"], f"{where} split_feature", 0, n_features - 1)
    threshold = _floats(fields["threshold"], f"{where} threshold")
    decision = _ints(fields["decision_type"], f"{where} decision_type", 0, 15)
    left = _ints(fields["left_child"], f"{where} left_child", -n_leaves, n_internal - 1)
    right = _ints(fields["right_child"], f"{where} right_child", -n_leaves, n_internal - 1)
    for key, values in (
        ("split_feature", feature),
        ("threshold", threshold),
        ("decision_type", decision),
        ("left_child", left),
        ("right_child", right),
    ):
        if len(values) != n_internal:
            _fail(where, f"{key} has {len(values)} values for {n_internal} splits.")
    _check_structure(left, right, n_leaves, where)
    lines = [
        "split_feature=" + " ".join(map(str, feature)),
        "threshold=" + " ".join(threshold),
        "decision_type=" + " ".join(map(str, decision)),
        "left_child=" + " ".join(map(str, left)),
        "right_child=" + " ".join(map(str, right)),
    ]
    for dt, thr in zip(decision, threshold):
        if (dt >> 2) & 3 == 3:
            _fail(where, f"decision_type {dt} has an unknown missing-value type.")
        if dt & 1:
            value = float(thr)
            if num_cat == 0 or value != int(value) or not 0 <= value < num_cat:
                _fail(where, f"categorical split threshold {thr} is not a category set index.")
    if num_cat == 0:
        if fields.get("cat_boundaries") or fields.get("cat_threshold"):
            _fail(where, "cat_boundaries given with num_cat=0.")
        return lines
    for key in ("cat_boundaries", "cat_threshold"):
        if key not in fields:
            _fail(where, f"{key}= is missing (num_cat={num_cat}).")
    bounds = _ints(fields["cat_boundaries"], f"{where} cat_boundaries", 0, _MAX_CATEGORY_WORDS)
    if (
        len(bounds) != num_cat + 1
        or bounds[0] != 0
        or any(b < a for a, b in zip(bounds, bounds[1:]))
    ):
        _fail(where, "cat_boundaries must be num_cat+1 non-decreasing offsets from 0.")
    words = _ints(fields["cat_threshold"], f"{where} cat_threshold", 0, 2**32 - 1)
    if len(words) != bounds[-1]:
        _fail(where, f"cat_threshold has {len(words)} words, cat_boundaries say {bounds[-1]}.")
    lines.append("cat_boundaries=" + " ".join(map(str, bounds)))
    lines.append("cat_threshold=" + " ".join(map(str, words)))
    return lines


def _blocks(lines, start):
    """Split the tree section into (index, key=value lines) blocks; return them and the end."""
    blocks = []
    i = start
    while i < len(lines):
        line = lines[i]
        if line == "end of trees":
            return blocks, i
        if not line.startswith("Tree="):
            _fail("trees", f"unexpected line {line[:60]!r} between trees.")
        if line != f"Tree={len(blocks)}":
            _fail("trees", f"{line[:40]!r} out of order (expected Tree={len(blocks)}).")
        if len(blocks) >= _MAX_TREES:
            _fail("trees", f"more than {_MAX_TREES} trees.")
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("Tree=") and lines[i] != "end of trees":
            if lines[i]:
                body.append(lines[i])
            i += 1
        blocks.append(body)
    _fail("trees", "no 'end of trees' line: the text is truncated.")


def canonical_model_text(text):
    """Check a LightGBM model text strictly and return the canonical text to load.

    Parameters
    ----------
    text : str
        A model text as written by ``lightgbm.Booster.model_to_string`` (a
        single-output model of plain, non-linear trees).

    Returns
    -------
    text : str
        The same model holding only the checked parts (header, trees, ``end of
        trees``): LightGBM predicts identically from it.

    Raises
    ------
    ValueError
        On anything this reader does not fully understand: a missing or repeated
        key, a count inconsistent with ``num_leaves``, a child index out of range or
        children that do not form a tree, a feature index beyond
        ``max_feature_idx``, a number that is not finite.

    Examples
    --------
    >>> from skfewrec.persistence._lightgbm import canonical_model_text
    >>> canonical_model_text("tree\\nversion=v4\\nnum_leaves=x")
    Traceback (most recent call last):
    ...
    ValueError: LightGBM model text, header: unexpected line 'num_leaves=x'.
    """
    if not isinstance(text, str):
        raise ValueError(f"LightGBM model text must be a str, got {type(text).__name__}.")
    if "\r" in text or "\0" in text:
        _fail("text", "carriage returns or NUL characters.")
    lines = text.split("\n")
    if lines[0] != "tree":
        _fail("text", "it does not start with 'tree'.")
    i = 1
    header_lines = []
    while i < len(lines) and not lines[i].startswith("Tree="):
        if lines[i]:
            header_lines.append(lines[i])
        i += 1
    fields = _key_values(header_lines, "header", {*_HEADER_KEYS, *_DROPPED_HEADER_KEYS})
    n_features = _header(fields)
    blocks, _ = _blocks(lines, i)
    if not blocks:
        _fail("trees", "the model has no tree.")
    out = ["tree", *(f"{key}={fields[key]}" for key in _HEADER_KEYS), ""]
    for number, body in enumerate(blocks):
        where = f"Tree={number}"
        tree_fields = _key_values(body, where, _TREE_KEYS)
        out += [where, *_tree(tree_fields, n_features, where), "", ""]
    out += ["end of trees", ""]
    return "\n".join(out)
