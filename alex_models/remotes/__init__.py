"""Remotes: content-addressed copies of blobs, laid out like the store
(``<prefix>/blobs/sha256/ab/<sha256>``, ``<prefix>/locks/…``), that ``push`` fills and
``sync --from`` reads. ``base`` says what a remote does; one module per kind (``folder``:
``file://`` naming a folder; ``bundle``: ``file://`` naming a bundle's tar, read-only;
``objects``: ``s3://``, ``gs://``, ``az://``; ``oci``: ``oci://``, a registry's repository), opened
here by the URL, each only when used.
"""

from __future__ import annotations

from collections.abc import Callable

from alex_models.errors import UsageError
from alex_models.manifest_fields import holds_credentials, userinfo_end
from alex_models.remotes.base import BlobRemote, ModelPublisher, MountsBlobs

__all__ = ["BlobRemote", "ModelPublisher", "MountsBlobs", "open_remote", "refuse_credentials"]


def refuse_credentials(given: str) -> None:
    """A remote given on the command line (a URL or a name) holds no secret either: argv lands in
    shell history, process lists and CI logs. One that does is a usage error that names it with
    the secret cut out (``s3://…@bucket/prefix``), raised before any request."""
    if not holds_credentials(given):
        return
    scheme, sep, rest = given.partition("://") if "://" in given else ("", "", given)
    head = rest.split("?", 1)[0].split("#", 1)[0]
    at = userinfo_end(head)
    shown = f"{scheme}{sep}{'…@' if at >= 0 else ''}{head[at + 1 :]}{'?…' if '?' in rest else ''}"
    raise UsageError(
        f"{shown}: a remote URL must not hold credentials (user:password@ or a token in the query)",
        hint="give them through the storage's own variables and files (AWS_ACCESS_KEY_ID, AWS_PROFILE…), "
        "and change that secret: it was on a command line",
    )


def open_remote(url: str) -> BlobRemote:
    """The remote at ``url``, by its scheme; an unknown scheme is a usage error naming the known ones,
    a URL holding credentials one that does not repeat them."""
    refuse_credentials(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise UsageError(
            f"{url!r} is not a remote this tool can use",
            hint=f"a remote is one of {', '.join(f'{s}://…' for s in _OPENERS)}, "
            "or a name from models.yaml's remotes:",
        )
    return opener(url)


def _open_file(url: str) -> BlobRemote:
    """A folder, or a bundle: a file (or a ``.tar`` name, so a missing bundle is named as one)."""
    from alex_models.remotes.folder import FolderRemote, file_path  # noqa: PLC0415

    path = file_path(url)
    if path.is_file() or (path.suffix == ".tar" and not path.is_dir()):
        from alex_models.remotes.bundle import BundleRemote  # noqa: PLC0415

        return BundleRemote(url, path)
    return FolderRemote(url, path)


def _open_object_store(url: str) -> BlobRemote:
    from alex_models.remotes.objects import ObjectStoreRemote  # noqa: PLC0415 - obstore, only when used

    return ObjectStoreRemote.from_url(url)


def _open_registry(url: str) -> BlobRemote:
    from alex_models.remotes.oci import OciRemote  # noqa: PLC0415

    return OciRemote(url)


_OPENERS: dict[str, Callable[[str], BlobRemote]] = {
    "file": _open_file,
    "s3": _open_object_store,
    "gs": _open_object_store,
    "az": _open_object_store,
    "oci": _open_registry,
    "oci+http": _open_registry,
    "oci+https": _open_registry,
}
