"""alex-models: a lockfile for local LLM weights.

``models.yaml`` says what you want, ``models.lock`` pins exact Hugging Face commits with the SHA256
and size of every file, ``sync`` puts exactly those bytes into a content-addressed store, and the
emitters write llama.cpp configuration that points at them.

The package imports nothing heavy at import time, so ``alex-models --help`` stays fast.
"""

from alex_models.errors import AlexModelsError, IntegrityError, RemoteError, UsageError, UserError

__version__ = "0.1.0"

__all__ = [
    "AlexModelsError",
    "IntegrityError",
    "RemoteError",
    "UsageError",
    "UserError",
    "__version__",
]
