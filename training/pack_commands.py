"""`zhenping pack`: the corpus tokenised once into a compact pack for pretraining elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()


@app.command("pack")
def pack_cmd(
    out: Path = typer.Option(Path("runs/pack"), "--out", help="Pack folder to write."),
    tokenizer: str = typer.Option(
        "default", "--tokenizer",
        help="Tokenizer folder; 'default': the shipped model's (needed for init_from = \"default\"); "
        "'train': the tokenizer stage of `zhenping pretrain` in --work.",
    ),
    work: Path = typer.Option(Path("runs/pretrain"), "--work", help="Where the corpus stage caches corpus.txt."),
    corpora: Optional[str] = typer.Option(None, "--corpora", help="Corpora root (default: $ZHENPING_CORPORA or ../shared)."),
    gold: Optional[str] = typer.Option(None, "--gold", help="Gold label folder whose validation/test texts are left out."),
    max_tokens: int = typer.Option(0, "--max_tokens", "--max-tokens", help="Keep documents up to this many tokens (0: all)."),
    max_mib: float = typer.Option(24.0, "--max_mib", "--max-mib", help="Largest size of the pack folder in MiB; documents are dropped until it fits."),
    heldout_docs: int = typer.Option(2000, "--heldout_docs", "--heldout-docs", help="Documents kept out of training for held-out accuracy."),
    seed: int = typer.Option(13, "--seed", help="Seed of the document order."),
    labels: bool = typer.Option(
        False, "--labels",
        help="Only add labels.npz to an existing pack: the prepared train/validation rows, tokenised "
        "(holds comment text: keep it under runs/).",
    ),
    data: Path = typer.Option(Path("runs/data"), "--data", help="Prepared splits for --labels."),
) -> None:
    """Write the pretraining pack: token ids (uint16, LZMA), document lengths, a held-out
    slice, the tokenizer and a JSON header; or, with --labels, the label pack beside it."""
    from zhenping.training.pack import build_pack, folder_bytes, write_label_pack

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)

    try:
        if labels:
            write_label_pack(out, data, echo=typer.echo)
        else:
            build_pack(out, tokenizer, work_dir=work, corpora=corpora, gold=gold, max_tokens=max_tokens,
                       max_mib=max_mib, heldout_docs=heldout_docs, seed=seed, echo=typer.echo)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{out}: {folder_bytes(out) / 1024 / 1024:.2f} MiB in all")
