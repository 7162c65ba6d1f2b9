"""``mirror serve --store --upstream``: the store catalogue's missing bytes fetched by pull-through,
and what a Hub client is answered when that fails.

A client is sent bytes only once the whole file is verified (``pullthrough``'s docstring says why),
so a failed pull-through is an error answer before any byte, in the Hub's shape (``X-Error-Message``
and a JSON ``{"error": …}``, which ``huggingface_hub`` shows), never a body cut short:

- upstream down or cut mid-file: ``502``; what arrived stays in the store's ``tmp/`` and the next
  request resumes it;
- upstream sent other bytes than the lock pins: ``502``; nothing was stored, nothing is served;
- the mirror itself cannot store it (disk full, read-only store) or upstream refuses the mirror's
  token: ``503``, the cause in the mirror's log only (it names this machine's folders).

``huggingface_hub`` fails a file GET on a 5xx at once (HUB_PROTOCOL.md §3.3); its user sees the
message and runs the download again, which the mirror then resumes or serves.
"""

from __future__ import annotations

from alex_models.errors import IntegrityError, RemoteError, UserError
from alex_models.lock import LockedFile
from alex_models.mirror.catalogue import FetchFailed
from alex_models.mirror.pullthrough import PullThrough
from alex_models.mirror.store_catalogue import FetchMissing


def pull_missing(pull: PullThrough) -> FetchMissing:
    """``StoreCatalogue.fetch_missing`` by ``pull``: blocks until the file is verified and stored
    (joining a download already running for it), or raises ``FetchFailed``."""

    def fetch(repo: str, commit: str, file: LockedFile) -> None:
        label = f"{repo}/{file.path}"
        try:
            pull.fetch(repo, commit, file)
        except IntegrityError:
            raise FetchFailed(
                502,
                f"{label}: upstream sent other bytes than the lock pins; "
                "the mirror stored none of them and serves none",
            ) from None
        except RemoteError:
            raise FetchFailed(
                502,
                f"{label}: the mirror could not fetch it from upstream; "
                "try again, the mirror resumes what arrived",
            ) from None
        except UserError:
            raise FetchFailed(503, f"{label}: the mirror cannot fetch it now; its log says why") from None

    return fetch
