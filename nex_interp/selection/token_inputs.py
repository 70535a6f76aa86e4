"""Names of the per-token output statistics the selection baselines read.

Capture stores these in the cache's ``tokens`` stream during the same forward pass that records
activations (so no second pass is needed); :func:`nex_interp.selection.pipeline.attach_token_stats`
reads the stream and :data:`nex_interp.selection.pipeline.STREAM_ALIASES` maps its arrays onto
these names. Each is one float per response token:

* ``entropy``            next-token entropy ``H(p_t)`` in nats.
* ``logprob``            log-probability of the token actually produced.
* ``topk_mean_logprob``  mean log-probability of the ``k`` most likely tokens (DeepConf).
* ``vocab_mean_logprob`` mean log-probability over the whole vocabulary (self-certainty).
"""

ENTROPY = "entropy"
LOGPROB = "logprob"
TOPK_MEAN_LOGPROB = "topk_mean_logprob"
VOCAB_MEAN_LOGPROB = "vocab_mean_logprob"

ALL = (ENTROPY, LOGPROB, TOPK_MEAN_LOGPROB, VOCAB_MEAN_LOGPROB)
