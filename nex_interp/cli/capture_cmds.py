"""Model-side commands: ``nex generate`` (sample responses) and ``nex capture`` (sparse caches).

Thin shells over :func:`nex_interp.generation.generate_to_file` and
:func:`nex_interp.capture.engine.write_cache`; torch and transformers are imported inside the
command functions only. Both commands resume: re-running the same command skips finished work.
"""

from __future__ import annotations

import argparse


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="hub name, local HF directory, .gguf file, 'smollm2' or 'zoo:NAME'")
    p.add_argument("--device", default=None, help="torch device (default: cpu; with --ray, cuda where the workers have GPUs)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="model dtype (default: float32)")


def register(sub) -> None:
    """Add ``generate`` and ``capture`` to the nex parser."""
    from ..capture.rules import DEFAULT_RULE
    from ..generation import GenerationConfig

    g = sub.add_parser(
        "generate",
        help="sample N responses per prompt with the model's KV-cached generate",
        description=(
            "Sample --samples responses per prompt (PROMPTS.jsonl rows need a 'prompt'; 'id' and other fields are "
            "carried over) into RESPONSES.jsonl, one problem at a time; re-running skips finished problems."
        ),
    )
    _model_args(g)
    d = GenerationConfig()
    g.add_argument("--prompts", required=True, help="input JSONL, one {'prompt': ...} per line")
    g.add_argument("-o", "--output", required=True, help="output RESPONSES.jsonl (appended to; finished problems skipped)")
    g.add_argument("--samples", type=int, default=d.samples, help=f"responses per prompt (default {d.samples})")
    g.add_argument("--temperature", type=float, default=d.temperature, help=f"sampling temperature, 0 = greedy (default {d.temperature})")
    g.add_argument("--top-p", type=float, default=d.top_p, help=f"nucleus sampling mass (default {d.top_p})")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help=f"response length cap (default {d.max_new_tokens})")
    g.add_argument("--seed", type=int, default=d.seed, help=f"random seed; each problem's RNG derives from it (default {d.seed})")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"sequences per generate call (default {d.batch_size})")
    g.add_argument("--batch-problems", type=int, default=d.batch_problems,
                   help="problems per generate call, each row sampled from its own seeded generator (default 1: one problem per call)")
    g.add_argument("--chat-template", action="store_true", help="wrap each prompt as a user message of the tokenizer's chat template")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .study_cmds import add_ray_args
    from ..generation_sharded import DEFAULT_PROMPT_SHARD_SIZE

    add_ray_args(g, f"with --ray: prompts per shard (default {DEFAULT_PROMPT_SHARD_SIZE})", DEFAULT_PROMPT_SHARD_SIZE)
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser(
        "capture",
        help="teacher-forced forward passes over responses -> sparse NEX activation cache",
        description=(
            "Run the model over prompt + response for every RESPONSES.jsonl row and write a sparse cache of "
            "MLP neuron activations (blocks.{L}.mlp.out.hook_in) per row of --row-tokens response tokens, with "
            "per-token entropy/log-prob statistics. Re-running resumes an interrupted capture."
        ),
    )
    _model_args(c)
    c.add_argument("--responses", required=True, help="input JSONL with 'id', 'prompt', 'response' per line")
    c.add_argument("-o", "--output", required=True, help="output cache directory")
    c.add_argument("--row-tokens", type=int, default=32, help="response tokens per cache row (default 32)")
    c.add_argument(
        "--rule", default=DEFAULT_RULE,
        help=f"activation rule: abs:T, topk:K or quantile:Q, optionally ',sign=magnitude' (default {DEFAULT_RULE})",
    )
    c.add_argument("--calib-responses", type=int, default=16, help="responses that calibrate a quantile rule (default 16)")
    c.add_argument("--layers", default="all", help="layers to capture, e.g. 0-11,20 (default all)")
    c.add_argument("--batch-size", type=int, default=None, help="responses per forward pass (default: 1 on a CPU, 4 on a GPU)")
    c.add_argument("--max-responses", type=int, default=None, help="capture only the first N responses")
    c.add_argument(
        "--chat-template", action=argparse.BooleanOptionalAction, default=None,
        help="force the chat template on/off (default: each row's 'chat_template' field from nex generate)",
    )
    c.add_argument("--no-token-stats", action="store_true", help="skip per-token entropy/log-prob stats (stops after the last layer)")
    c.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue an existing cache (default: yes)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_args(c, "responses per shard (default 64)", 64)
    c.set_defaults(func=cmd_capture)


def cmd_generate(args: argparse.Namespace) -> int:
    """``nex generate``: responses JSONL from prompts JSONL."""
    from ..generation import GenerationConfig, generate_to_file
    from ..jsonl import read_jsonl
    from ..models.loader import load_model

    config = GenerationConfig(
        samples=args.samples, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
        seed=args.seed, batch_size=args.batch_size, chat_template=args.chat_template,
        batch_problems=args.batch_problems,
    )
    prompts = read_jsonl(args.prompts, "prompts file", line_numbers=True)
    if args.ray is not None:
        from ..generation_sharded import generate_sharded
        from .study_cmds import ray_options

        rep = generate_sharded(args.model, prompts, args.output, config, ray_options(args, args.shard_size), device=args.device,
                               dtype=args.dtype, progress=not args.no_progress)
        print(rep.summary())
        return 0
    model = load_model(args.model, device=args.device or "cpu", dtype=args.dtype, boot_bridge=False)  # plain HF decoding
    rep = generate_to_file(model, prompts, args.output, config, progress=not args.no_progress)
    print(
        f"generated {rep.n_generated} responses for {rep.n_problems - rep.n_skipped_done} problems"
        + (f" ({rep.n_skipped_done} already done)" if rep.n_skipped_done else "")
        + f" into {rep.output}"
    )
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    """``nex capture``: a sparse activation cache from responses JSONL."""
    from ..capture.engine import CaptureConfig, write_cache, parse_layers
    from ..capture.rules import parse_rule
    from ..jsonl import read_jsonl
    from ..models.loader import load_model

    parse_rule(args.rule, args.calib_responses)
    responses = read_jsonl(args.responses, "responses file", line_numbers=True)
    if args.ray is not None:
        return _capture_ray(args, responses)
    model = load_model(args.model, device=args.device or "cpu", dtype=args.dtype)
    config = CaptureConfig(
        rule=args.rule, row_tokens=args.row_tokens, layers=parse_layers(args.layers, model.n_layers),
        batch_size=args.batch_size, max_responses=args.max_responses, token_stats=not args.no_token_stats,
        calib_responses=args.calib_responses, chat_template=args.chat_template, progress=not args.no_progress,
    )
    rep = write_cache(model, responses, args.output, config, resume=args.resume)
    print(rep.summary())
    return 0


def _capture_ray(args: argparse.Namespace, responses: list[dict]) -> int:
    """``nex capture --ray``: the same capture, sharded over Ray workers (:mod:`nex_interp.capture.distributed`)."""
    from ..capture.distributed import RayOptions, capture_sharded
    from ..capture.engine import CaptureConfig

    if args.layers != "all":
        from ..capture.engine import parse_layers
        from ..models.loader import load_model

        n_layers = load_model(args.model, device="cpu", dtype=args.dtype, boot_bridge=False).n_layers  # range check here
        layers = parse_layers(args.layers, n_layers)
    else:
        layers = None
    config = CaptureConfig(
        rule=args.rule, row_tokens=args.row_tokens, layers=layers, batch_size=args.batch_size,
        max_responses=args.max_responses, token_stats=not args.no_token_stats, calib_responses=args.calib_responses,
        chat_template=args.chat_template, progress=not args.no_progress,
    )
    if not args.resume:
        from pathlib import Path

        if Path(args.output).exists():
            from ..errors import ConfigError

            raise ConfigError(f"output {args.output} exists and --no-resume was given: choose a new directory")
    options = RayOptions(address=None if args.ray == "local" else args.ray, workers=args.workers,
                         gpus_per_worker=args.gpus_per_worker, shard_size=args.shard_size)
    rep = capture_sharded(args.model, responses, args.output, config, options, device=args.device, dtype=args.dtype)
    print(rep.summary())
    return 0
