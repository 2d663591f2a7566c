"""Model subcommands of `zhenping`: pretrain, train (fine-tune), export."""

from __future__ import annotations

from typing import Optional

import typer

from training.cli import app


@app.command(
    "pretrain",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def pretrain_cmd(
    ctx: typer.Context,
    config: str = typer.Option("pretrain_cpu.toml", help="TOML file (bare names: training/configs/)."),
    corpora: Optional[str] = typer.Option(None, help="Corpora root (default: $ZHENPING_CORPORA or ../shared)."),
) -> None:
    """Pretrain the Chinese encoder with masked-language modelling (resumable).

    Extra --key=value arguments override the config, e.g. --max_minutes=60.
    """
    from training.config import load_config, parse_overrides
    from training.pretrain import PretrainConfig, run

    overrides = parse_overrides(ctx.args)
    if corpora:
        overrides["corpora"] = corpora
    try:
        cfg = load_config(PretrainConfig, config, overrides)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None
    run(cfg)
