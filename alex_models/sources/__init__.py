"""Where blobs come from: the seam between the downloader and the Hub, plain URLs and folders.

``base`` defines the seam (``Source``, ``Reader``, ``Body`` and what they raise); ``http`` the
HTTP wire the Hub and plain-URL sources share, and the plain-URL source; ``hub`` the Hub's rules;
``folder`` a folder laid out like the store (``file://``); ``bundle`` a bundle's tar, read in place.
"""

from alex_models.sources.base import Blob, Body, LockDisagrees, Missing, Reader, Source, Transient, Wire
from alex_models.sources.bundle import BundleSource
from alex_models.sources.folder import FolderSource
from alex_models.sources.http import UrlSource
from alex_models.sources.hub import HubSource

__all__ = [
    "Blob",
    "Body",
    "BundleSource",
    "FolderSource",
    "HubSource",
    "LockDisagrees",
    "Missing",
    "Reader",
    "Source",
    "Transient",
    "UrlSource",
    "Wire",
]
