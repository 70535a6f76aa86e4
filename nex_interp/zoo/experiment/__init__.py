"""The NEX paper's headline experiment on the embedded zoo, end to end on a CPU (``nex demo``).

For each of ``n_variants`` SLERP merges between the zoo's ``instruct`` and ``thinking`` models
(``lambda`` = 0 gives instruct, 1 gives thinking, endpoints included), and for the data-mixture
family (fine-tunes of ``base`` on 0..100% worked solutions):

1. merge (:func:`nex_interp.merge.merge_models`) and load the variant;
2. sample responses to the same unlabeled problems (:func:`nex_interp.generation.generate_responses`);
3. capture a sparse activation cache (:func:`nex_interp.capture.engine.write_cache`);
4. self-calibrate NEX on that cache (learn weights without labels, score every response);
5. evaluate accuracy with the generator's answers (used for evaluation only), count E segments of
   the HMM phases, and count high-entropy rows (the entropy exploration proxy).

Then it writes ``OUT/summary.json`` (``variants``, ``correlation``, ``inverted_u``,
``phase_agreement`` and the ``mixture_family``), the plots, the neuron-weight table of the most
accurate variant, ``selection.csv`` and ``sample_efficiency.csv``, and prints a summary table.
Each variant's results are kept under ``OUT/variants/<name>/`` as they finish, so an interrupted
run resumes where it stopped. The same seed gives the same numbers. Labels never enter NEX.

The parts, for notebooks:

* :mod:`.config`: :class:`DemoConfig` (settings), :class:`VariantResult` (one variant's numbers);
* :mod:`.variant`: one variant: :func:`run_variant` and its steps (:func:`demo_problems`,
  :func:`variant_model_dir`, :func:`sample_responses`, :func:`capture_responses`,
  :func:`self_calibrated_nex`, :func:`evaluate`), and reading a finished one back
  (:func:`variant_cache`, :func:`variant_responses`);
* :mod:`.analysis`: across variants: :func:`row_entropies`, :func:`high_entropy_rows`,
  :func:`quadratic_fit`, :func:`family_phase_agreement`, :func:`selection_outputs`;
* :mod:`.figures`: :func:`demo_figures`;
* :mod:`.run`: :func:`run_demo` (all of it), :func:`variant_jobs`, :func:`print_summary_table`.

Importing this package does not import torch.
"""

from ...stats import quadratic_fit
from .analysis import family_phase_agreement, high_entropy_rows, row_entropies, selection_outputs
from .config import DemoConfig, VariantResult
from .figures import demo_figures
from .run import print_summary_table, run_demo, variant_jobs
from .variant import (
    capture_responses,
    demo_problems,
    evaluate,
    responses_in_cache_order,
    run_variant,
    sample_responses,
    self_calibrated_nex,
    variant_cache,
    variant_dir,
    variant_model_dir,
    variant_responses,
)

__all__ = [
    "DemoConfig",
    "VariantResult",
    "capture_responses",
    "demo_figures",
    "demo_problems",
    "evaluate",
    "family_phase_agreement",
    "high_entropy_rows",
    "print_summary_table",
    "quadratic_fit",
    "responses_in_cache_order",
    "row_entropies",
    "run_demo",
    "run_variant",
    "sample_responses",
    "selection_outputs",
    "self_calibrated_nex",
    "variant_cache",
    "variant_dir",
    "variant_jobs",
    "variant_model_dir",
    "variant_responses",
]
