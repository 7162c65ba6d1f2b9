"""``alex-models mirror``: serve a folder of repos as a Hugging Face Hub-compatible endpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models._platform import wait_until_interrupted
from alex_models.cli.render import say

if TYPE_CHECKING:
    from collections.abc import Callable

    from alex_models.mirror import Faults, MirrorServer, RequestRecord
    from alex_models.mirror.catalogue import Catalogue
    from alex_models.mirror.pullthrough import PullStats, PullThrough
    from alex_models.store import Store

mirror_app = typer.Typer(
    help="Serve repos as a Hugging Face Hub-compatible endpoint (HF_ENDPOINT).", no_args_is_help=True
)


@mirror_app.command("serve")
def serve(
    home: Annotated[
        Path | None,
        typer.Argument(
            metavar="HOME",
            help="With --store: the store's folder (default: ALEX_MODELS_HOME, else ~/.alex/models).",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Folder laid out as ROOT/<org>/<name>/{refs.json,repo.json,<commit>/…}."),
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="Serve the repos, commits and files of locks (the store's registered locks, or --lock), "
            "with the bytes from the store's blobs.",
        ),
    ] = False,
    lock: Annotated[
        list[Path] | None,
        typer.Option(
            help="With --store: serve what this models.lock pins (repeatable; later ones name refs)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port (0 picks a free one).", min=0, max=65535)] = 8090,
    cdn_port: Annotated[
        int | None,
        typer.Option(help="Port of the second origin that serves LFS bytes (default: the API port + 1)."),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="With --store: client tokens, one per line; clients must send one (HF_TOKEN)."),
    ] = None,
    public: Annotated[
        bool,
        typer.Option("--public", help="With --store: serve beyond loopback without a token file."),
    ] = False,
    access_log: Annotated[
        Path | None,
        typer.Option(help="With --store: append the JSON access log here instead of stderr."),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            help="With --store: a locked file the store lacks is fetched once from this Hub endpoint, "
            "verified against the lock and stored, then served (default: HF_ENDPOINT, else "
            "https://huggingface.co; the mirror's own token: HF_TOKEN or the saved login).",
            show_default=False,
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="With --store: never fetch from upstream (also when HF_HUB_OFFLINE is set); "
            "a locked file the store lacks is answered as missing.",
        ),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(help="With --store: seconds that requests in flight get to finish on SIGTERM.", min=0),
    ] = 30.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject a fault, e.g. 'latency=50ms', 'bandwidth=50MB', 'drop-after=15MB,times=1', "
            "'status=503,times=2', 'rate-limit=1', 'corrupt,file=*.gguf'. Repeatable.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print a line per request.")] = False,
) -> None:
    """Serve ROOT, or a store's locked models (--store), until interrupted; point clients at it
    with HF_ENDPOINT."""
    from alex_models.mirror.faults import Fault, Faults

    faults = Faults([Fault.parse(spec) for spec in fault or []])
    cdn = (port + 1 if port else 0) if cdn_port is None else cdn_port
    if not store:
        _refuse_store_options(home, lock, token_file, public, access_log, upstream, offline)
        if root is None:
            raise _usage("give --root DIR (a mirror root) or --store [HOME] (a store's locked models)")
        _serve_until_stopped(root, host=host, port=port, cdn_port=cdn, faults=faults, access_log=not quiet)
        return
    if root is not None:
        raise _usage("--root and --store name two different things to serve: give one")
    if upstream is not None and offline:
        raise _usage("--upstream and --offline contradict each other: give one")
    _serve_store(
        home,
        lock or None,
        token_file,
        public=public,
        access_log_path=access_log,
        upstream=upstream,
        offline=offline,
        grace=grace,
        faults=faults,
        quiet=quiet,
        host=host,
        port=port,
        cdn_port=cdn,
    )


def _usage(message: str) -> Exception:
    from alex_models.errors import UsageError

    return UsageError(message, hint="see 'alex-models mirror serve --help'")


def _refuse_store_options(home: Path | None, *given: object) -> None:
    if home is not None:
        raise _usage(f"{home}: a store folder goes with --store (mirror serve --store {home})")
    names = ("--lock", "--token-file", "--public", "--access-log", "--upstream", "--offline")
    used = [name for name, value in zip(names, given, strict=True) if value]
    if used:
        raise _usage(f"{', '.join(used)} only apply with --store")


def _serve_store(
    home: Path | None,
    locks: list[Path] | None,
    token_file: Path | None,
    *,
    public: bool,
    access_log_path: Path | None,
    upstream: str | None,
    offline: bool,
    grace: float,
    faults: Faults,
    quiet: bool,
    host: str,
    port: int,
    cdn_port: int,
) -> None:
    """Serve a store's locked models, pulling the missing ones through from ``upstream``; on Ctrl-C
    or SIGTERM, stop taking connections, stop the downloads from upstream (what arrived is kept),
    and let the requests in flight finish (up to ``grace`` seconds; a second signal cuts them)."""
    from contextlib import ExitStack

    from alex_models.errors import Interrupted, exit_code_of
    from alex_models.mirror.access import access_log, access_log_line, check_exposure, read_token_file
    from alex_models.mirror.stderr import write_stderr
    from alex_models.mirror.store_catalogue import StoreCatalogue, answer_missing
    from alex_models.mirror.upstream import pull_missing
    from alex_models.settings import Settings, store_home
    from alex_models.store import Store

    tokens = read_token_file(token_file) if token_file is not None else frozenset()
    check_exposure(host, tokens=bool(tokens), public=public)
    store = Store(home if home is not None else store_home().path)
    settings = Settings.from_env()
    if upstream is None and not (offline or settings.offline):
        upstream = settings.endpoint
    with ExitStack() as stack:
        write_line = stack.enter_context(access_log(access_log_path))
        pull = None if upstream is None else stack.enter_context(_pull_through(store, upstream, write_line))
        fetch_missing = answer_missing if pull is None else pull_missing(pull)
        catalogue = StoreCatalogue(
            store, locks, tokens=tokens, fetch_missing=fetch_missing, warn=write_stderr
        )
        if not catalogue.repo_ids:
            which = "the locks given" if locks else f"the locks registered with {store.home}"
            write_stderr(f"mirror: warning: {which} pin no Hugging Face repo: nothing to serve yet")

        def log_request(record: RequestRecord) -> None:
            write_line(access_log_line(record))

        server = _listen(
            catalogue,
            faults,
            None if quiet else log_request,
            host,
            port,
            cdn_port,
            pull_stats=None if pull is None else pull.stats,
        )
        with server:
            access = f"clients send a token from {token_file}" if tokens else "no token asked"
            missing = f"missing files pulled through from {upstream}" if upstream else "offline"
            repos = len(catalogue.repo_ids)
            say(f"Serving {repos} locked repo{'' if repos == 1 else 's'} of {store.home} at {server.url} "
                f"(LFS bytes from {server.cdn_url}; {access}; {missing})")  # fmt: skip
            say(f"  export HF_ENDPOINT={server.url}")
            sys.stdout.flush()
            try:
                wait_until_interrupted()
            except KeyboardInterrupt as exc:
                code = exit_code_of(exc)
                try:
                    cut = server.drain(grace, stopping=None if pull is None else pull.close)
                except KeyboardInterrupt:  # a second signal: stop now
                    cut = server.metrics.in_flight
                ending = f"{cut} requests cut" if cut else "every request in flight finished"
                raise Interrupted(f"stopped serving {server.url}; {ending}", exit_code=code) from None


def _pull_through(store: Store, upstream: str, write_line: Callable[[str], None]) -> PullThrough:
    """Pull-through from ``upstream`` with the mirror's own token, logging to the access log."""
    from alex_models.fetch import hub_token
    from alex_models.mirror.access import event_line
    from alex_models.mirror.pullthrough import PullThrough

    return PullThrough(
        store, upstream, hub_token(), log=lambda text: write_line(event_line("pull-through", text))
    )


def _listen(
    source: Path | Catalogue,
    faults: Faults,
    on_request: Callable[[RequestRecord], None] | None,
    host: str,
    port: int,
    cdn_port: int,
    pull_stats: Callable[[], PullStats] | None = None,
) -> MirrorServer:
    from alex_models.errors import UserError
    from alex_models.mirror import MirrorServer

    try:
        return MirrorServer(
            source,
            host=host,
            port=port,
            cdn_port=cdn_port,
            faults=faults,
            on_request=on_request,
            pull_stats=pull_stats,
        )
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} or {cdn_port}: {exc.strerror}",
            hint="pick other ports with --port/--cdn-port (0 picks a free one)",
        ) from None


def _serve_until_stopped(
    root: Path, *, host: str, port: int, cdn_port: int, faults: Faults, access_log: bool
) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM, which stop it at once: requests in flight
    are cut (a client resumes them), and the exit code says which signal it was (130, 143)."""
    from alex_models.errors import Interrupted, exit_code_of
    from alex_models.mirror.stderr import write_stderr

    def log_line(record: RequestRecord) -> None:
        tags = f" [{','.join(record.faults)}]" if record.faults else ""
        write_stderr(
            f"{record.method} {record.origin} {record.path} {record.status} {record.bytes_sent}B{tags}"
        )

    server = _listen(root, faults, log_line if access_log else None, host, port, cdn_port)
    try:
        with server:
            say(f"Serving {root} at {server.url} (LFS bytes from {server.cdn_url})")
            say(f"  export HF_ENDPOINT={server.url}")
            sys.stdout.flush()
            wait_until_interrupted()
    except KeyboardInterrupt as exc:  # Interrupted too (SIGTERM): the server is stopped by now
        raise Interrupted(f"interrupted; stopped serving {server.url}", exit_code=exit_code_of(exc)) from None


def main_standalone() -> None:
    """``python -m alex_models.mirror``: the ``serve`` command as a program of its own."""
    from alex_models.cli.errors import GuardedCommand, run_guarded

    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command(cls=GuardedCommand)(serve)
    run_guarded(lambda: standalone(prog_name="python -m alex_models.mirror"), None)
