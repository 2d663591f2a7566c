"""Service subcommand of `zhenping`: serve."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Optional

import typer

from zhenping.model.scorer import Backend

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()


def _settings_error(exc) -> str:
    # Name the variable and the reason; never echo values (they may be API keys).
    lines = []
    for err in exc.errors(include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ()))
        name = f"ZHENPING_{field.upper()}" if field else "settings"
        lines.append(f"  {name}: {err.get('msg')}")
    return "invalid settings:\n" + "\n".join(lines)


@app.command("serve")
def serve(
    host: Optional[str] = typer.Option(None, help="Bind address (default: $ZHENPING_HOST or 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default: $ZHENPING_PORT or 8000)."),
    model: Optional[Path] = typer.Option(None, help="Exported scorer directory (default: $ZHENPING_MODEL_DIR or the shipped model)."),
    backend: Optional[Backend] = typer.Option(None, help="Inference runtime (default: $ZHENPING_BACKEND or auto)."),
    workers: int = typer.Option(1, min=1, help="Processes, each with its own model copy."),
    graceful_timeout: int = typer.Option(30, min=1, help="Seconds to finish in-flight requests after SIGTERM."),
) -> None:
    """Run the scoring HTTP service (web page at /, API docs at /docs).

    Refuses to start (exit code 1) when the model directory is missing or cannot
    be loaded. On SIGTERM it stops accepting connections, answers /ready with
    503 and finishes queued batches before exiting.
    """
    from pydantic import ValidationError

    from zhenping.api.campaign import redacted_url
    from zhenping.api.service import ModelLoadError, check_model_dir
    from zhenping.api.settings import Settings

    overrides = {"host": host, "port": port, "model_dir": model, "backend": backend.value if backend else None}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        typer.echo(f"zhenping serve: {_settings_error(exc)}", err=True)
        raise typer.Exit(2) from None
    try:
        check_model_dir(settings.model_dir)
    except ModelLoadError as exc:
        typer.echo(f"zhenping serve: {exc}", err=True)
        raise typer.Exit(1) from None

    shown = settings.model_dump(exclude={"api_keys"})
    shown["api_keys"] = f"{len(settings.api_keys)} configured" if settings.api_keys else "none (auth off)"
    shown["dup_redis_url"] = redacted_url(settings.dup_redis_url)
    typer.echo("zhenping serve settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()), err=True)

    if workers == 1:
        _serve_one(settings, graceful_timeout)
    else:
        _serve_many(settings, overrides, workers, graceful_timeout)


def _serve_one(settings, graceful_timeout: int) -> None:
    import uvicorn

    from zhenping.api.main import begin_drain, create_app

    failure: list[str] = []

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # Turn /ready to 503 and flush the queue at once, then let uvicorn
            # stop accepting and wait for in-flight requests.
            begin_drain(application)
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                # uvicorn raises the signal again once it has shut down, so the
                # exit status would be 143; a drained stop on SIGTERM is the
                # normal end of a service and exits 0.
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list) and sig in captured:
                    captured.remove(sig)

    def on_load_failure(reason: str) -> None:
        failure.append(reason)
        server.should_exit = True

    application = create_app(settings, on_load_failure=on_load_failure)
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=graceful_timeout,
    )
    server = DrainingServer(config)
    server.run()
    if failure:
        typer.echo(f"zhenping serve: {failure[0]}", err=True)
        raise typer.Exit(1)
    if not server.started:
        raise typer.Exit(1)


def _serve_many(settings, overrides: dict, workers: int, graceful_timeout: int) -> None:
    import uvicorn

    from zhenping.api.service import ModelLoadError, load_scorer

    # Each worker loads its own copy before it takes connections (so the shared
    # socket only hands requests to workers that can score); load once here
    # first so that a bad model stops the start instead of workers failing one by one.
    try:
        scorer, _ = load_scorer(settings)
    except ModelLoadError as exc:
        typer.echo(f"zhenping serve: {exc}", err=True)
        raise typer.Exit(1) from None
    del scorer
    for key, value in overrides.items():
        os.environ[f"ZHENPING_{key.upper()}"] = str(value)
    # The processes share the cores: each gets its share for its own model calls.
    from zhenping.api.settings import available_cores

    calls, threads = settings.resolve_workers(max(1, available_cores() // workers))
    os.environ["ZHENPING_INFERENCE_WORKERS"] = str(calls)
    os.environ["ZHENPING_NUM_THREADS"] = str(threads)
    metrics_dir, own_dir = _metrics_dir()
    try:
        uvicorn.run(
            "zhenping.api.main:create_worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=graceful_timeout,
        )
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> tuple[Path, bool]:
    """The folder the workers share their Prometheus metrics through, emptied; ``(folder, made_here)``.

    ``PROMETHEUS_MULTIPROC_DIR`` when set (its metric files from an earlier run are
    removed, so counters start at 0 with the service), else a new temporary folder
    that is removed when the service stops. Set in the environment the workers inherit.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="zhenping-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder, not given
