"""Public docstrings follow numpydoc: validated with numpydoc's own checker.

Checked on every public class and function of skfewrec and on the public methods
of its estimators: a docstring with a summary, every parameter documented and no
unknown one, a Returns section for functions, and an Examples section on every
public class and function.
"""

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")


PUBLIC_MODULES = [
    "skfewrec",
    "skfewrec.datasets",
    "skfewrec.metrics",
    "skfewrec.model_selection",
    "skfewrec.preprocessing",
    "skfewrec.spark",
]

#: numpydoc codes enforced everywhere / on top-level objects only
CODES = {"GL08", "SS01", "PR01", "PR02", "PR07", "RT01"}
TOP_LEVEL_CODES = CODES | {"EX01"}
METHODS = (
    "fit",
    "transform",
    "fit_transform",
    "recommend",
    "decision_function",
    "score",
    "predict",
    "add_items",
    "partial_fit",
)


def _public_objects():
    seen = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            if name.startswith("_"):
                continue
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or obj in seen:
                continue
            seen.add(obj)
            qual = f"{obj.__module__}.{obj.__qualname__}"
            yield pytest.param(obj, TOP_LEVEL_CODES, id=qual)
            if inspect.isclass(obj):
                for method in METHODS:
                    if method in vars(obj) or (
                        hasattr(obj, method)
                        and getattr(obj, method).__module__.startswith("skfewrec")
                    ):
                        yield pytest.param(getattr(obj, method), CODES, id=f"{qual}.{method}")


@pytest.mark.parametrize(("obj", "codes"), list(_public_objects()))
def test_docstring(obj, codes):
    result = numpydoc_validate.validate(numpydoc_validate.get_doc_object(obj))
    errors = [f"{code}: {msg}" for code, msg in result["errors"] if code in codes]
    assert not errors, "\n".join(errors)
