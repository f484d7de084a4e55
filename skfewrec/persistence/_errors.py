"""The one error of bundle reading and writing."""


class BundleError(ValueError):
    """A model bundle that cannot be written or read: corrupt, tampered, or unsupported.

    Every failure of :func:`~skfewrec.load` on a bundle's content is this error
    (whatever failed inside: JSON, zip, numpy, LightGBM, a size limit, a value
    check). A ``ValueError``: catching ``ValueError`` catches it.

    Examples
    --------
    >>> from skfewrec.persistence import BundleError, loads
    >>> try:
    ...     loads(b"junk")
    ... except BundleError as exc:
    ...     print("refused")
    refused
    """


BundleError.__module__ = "skfewrec.persistence"
