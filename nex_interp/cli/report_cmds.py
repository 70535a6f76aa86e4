"""Report command: ``nex report CACHE --response I -o report.html``.

A thin shell over :mod:`nex_interp.report`; it never imports torch or transformers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .nex_params import add_nex_params, nex_params


def _read_texts(path: Path) -> list[str | None]:
    """Per-response texts from a JSONL file (field ``text``, ``response`` or ``completion``)."""
    from ..errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"--responses file {path} does not exist: give a JSONL file with one object per response")
    texts: list[str | None] = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"--responses file {path} line {n} is not valid JSON: give one JSON object per line") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"--responses file {path} line {n} is not a JSON object")
        texts.append(next((obj[k] for k in ("text", "response", "completion") if isinstance(obj.get(k), str)), None))
    return texts


def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report of one response of a cache."""
    from ..errors import ConfigError
    from ..report import gather_report, load_tokenizer, write_report

    out = Path(args.output)
    cache = Path(args.cache)
    if out.is_dir():
        raise ConfigError(f"output {out} is a directory: give a file name for -o, e.g. report.html")
    if out.resolve() == cache.resolve() or cache.resolve() in out.resolve().parents:
        raise ConfigError(f"output {out} lies inside the cache {cache}: choose another -o")
    weights = None
    if args.weights is not None:
        from ..weights_io import load_weights

        weights = load_weights(args.weights)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer is not None else None
    texts = _read_texts(Path(args.responses)) if args.responses is not None else None
    params = nex_params(args)
    data = gather_report(cache, args.response, weights=weights, params=params, tokenizer=tokenizer, texts=texts, top=args.top)
    write_report(
        data,
        out,
        config={"params": params.to_dict(), "top": args.top},
        inputs={"weights": args.weights, "tokenizer": args.tokenizer, "responses": args.responses},
        model=data.model or None,
    )
    print(
        f"wrote {out}: response {data.response}, {len(data.rows)} rows ({data.n_explore} E), "
        f"{len(data.cycles)} cycles, GMF {data.gmf:.4f}; text: {data.text_source}"
    )
    return 0


def register(sub) -> None:
    """Add ``nex report`` to the nex parser."""
    p = sub.add_parser(
        "report",
        help="self-contained HTML report of one response (phases, cycles, neurons)",
        description=(
            "Write one self-contained HTML file (inline SVG and CSS, no network) showing a response's text with each row "
            "coloured by its explore/exploit phase (rows only when the cache has no token text), the novelty curve with the "
            "phase strip, each E->X cycle's signals and the neurons contributing most mass x weight."
        ),
    )
    p.add_argument("cache", metavar="CACHE", help="sparse activation cache directory")
    p.add_argument("--response", "-i", type=int, required=True, metavar="I", help="index of the response to report (0-based)")
    p.add_argument("-o", "--output", required=True, metavar="HTML", help="output file, e.g. report.html")
    p.add_argument("--weights", metavar="NPZ", help="NEX weights (.npz from nex train, or the reference's); default: learn on CACHE")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json or a model directory holding one (default: the model directory the cache records, model.path)")
    p.add_argument("--responses", metavar="JSONL", help="per-response texts (field 'text'), used when the cache has no token ids")
    p.add_argument("--top", type=int, default=15, help="neurons to list on each side (default 15)")
    add_nex_params(p)
    p.set_defaults(func=cmd_report)
