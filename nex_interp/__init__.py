"""nex-interp: NEX neuron explore-exploit scoring on TransformerLens 4.

The main entry points, for notebooks and scripts (``import nex_interp as nex``)::

    model = nex.load("zoo:thinking")                          # a LoadedModel (HF dir, .gguf, smollm2, zoo:NAME)
    cache = nex.capture_cache(model, responses, "cache")      # a sparse MLP-activation cache, opened
    weights = nex.learn(cache)                                # signed neuron weights (NEX)
    scores = nex.score(cache, weights)                        # GMF per response, a DataFrame by response id
    nex.neuron_table(weights, top=20)                         # the neuron-weight table
    top = nex.top_effective(weights, k=64)                    # a neuron set
    with nex.ablate(model, top):                              # ... any forward pass or evaluation inside
        ...

Stages: :func:`load` -> :func:`generate` -> :func:`capture_cache` (or :func:`open` an existing cache)
-> :func:`learn` -> :func:`score` -> :func:`select` (best-of-N) / :func:`rank` (model variants) ->
neuron sets -> :func:`ablate` / :func:`transplant` / :func:`patch` -> :func:`evaluate`, or a whole
transfer experiment with :func:`run_experiment`; the whole sweep over models with :func:`run_study`
(``nex study``: ``run_study(load_study("study.toml"), "OUT")``).

Importing this package (and running ``nex train/score/run/table``) never imports torch or
transformers: every name below is loaded on first use. (The capture and table entry points are
called ``capture_cache`` and ``neuron_table`` because ``nex_interp.capture`` and ``nex_interp.table``
are modules: importing one binds its name on this package, which would hide a function so named.)
"""

__version__ = "0.1.0"

#: public name -> (module, attribute), loaded on first use
_API = {
    # models and data
    "load": ("nex_interp.models.loader", "load_model"),
    "LoadedModel": ("nex_interp.models.loader", "LoadedModel"),
    "generate": ("nex_interp.generation", "generate_responses"),
    "capture_cache": ("nex_interp.capture.run", "capture_cache"),
    "CaptureConfig": ("nex_interp.capture.engine", "CaptureConfig"),
    "open": ("nex_interp.cache.reader", "open_cache"),
    "open_cache": ("nex_interp.cache.reader", "open_cache"),
    # the NEX core
    "NexParams": ("nex_interp.core.params", "NexParams"),
    "learn": ("nex_interp.core.learn", "learn_weights"),
    "score": ("nex_interp.scores", "score_table"),
    "score_responses": ("nex_interp.core.score", "score_responses"),
    "nex_score": ("nex_interp.core.score", "nex_score"),
    "diagnose": ("nex_interp.core.diagnostics", "diagnose_response"),
    "load_weights": ("nex_interp.weights_io", "load_weights"),
    "neuron_table": ("nex_interp.table", "neuron_table"),
    # selection and ranking
    "select": ("nex_interp.selection.pipeline", "select_best_of_n"),
    "rank": ("nex_interp.selection.pipeline", "rank_variants"),
    # neuron sets and interventions
    "NeuronSet": ("nex_interp.interventions.neuron_sets", "NeuronSet"),
    "top_effective": ("nex_interp.interventions.neuron_sets", "top_effective"),
    "top_redundant": ("nex_interp.interventions.neuron_sets", "top_redundant"),
    "random_matched": ("nex_interp.interventions.neuron_sets", "random_matched"),
    "by_threshold": ("nex_interp.interventions.neuron_sets", "by_threshold"),
    "ablate": ("nex_interp.interventions.ablation", "ablate"),
    "transplant": ("nex_interp.interventions.transplant", "transplant"),
    "patch": ("nex_interp.interventions.patching", "patch_from_donor"),
    "evaluate": ("nex_interp.interventions.evaluate", "evaluate"),
    "get_task": ("nex_interp.interventions.tasks", "get_task"),
    "load_experiment": ("nex_interp.interventions.config", "load_config"),
    "run_experiment": ("nex_interp.interventions.experiment", "run_experiment"),
    # the whole sweep (nex study)
    "load_study": ("nex_interp.study.config", "read_study"),
    "run_study": ("nex_interp.study.run", "run_study"),
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'nex_interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
