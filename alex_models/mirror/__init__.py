"""A Hugging Face Hub-compatible mirror server.

It serves the repos of a mirror root (see ``alex_models.mirror.repos`` for the layout) with the
HTTP protocol the real ``huggingface_hub`` client speaks, so ``HF_ENDPOINT=<mirror url>`` makes
any Hub client download from it. It is the fixture every download test uses, and with fault
injection (``alex_models.mirror.faults``) the way reliability tests make a network misbehave.
"""

from alex_models.mirror.faults import Fault, Faults
from alex_models.mirror.messages import RequestRecord
from alex_models.mirror.repos import DirectorySource, RepoSettings
from alex_models.mirror.root import MirrorRoot
from alex_models.mirror.server import MirrorServer

__all__ = [
    "DirectorySource",
    "Fault",
    "Faults",
    "MirrorRoot",
    "MirrorServer",
    "RepoSettings",
    "RequestRecord",
]
