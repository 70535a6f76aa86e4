"""The box-search task: a zoo task whose worked solutions are long searches with labelled
explore (E) and exploit (X) spans, in styles that explore too little, enough, and too much.

Modules: :mod:`.task` (problems, prompts, vocabulary, answer checking), :mod:`.traces`
(reference responses per style with per-token E/X labels), :mod:`.audit` (step-by-step
consistency of any response with its problem), :mod:`.stats` (trace statistics at a row size),
:mod:`.tokenizer` (word-level tokenizer). The design is in ``docs/zoo-design.md``. Not wired
into ``nex demo`` or the CLI yet; the shipped zoo is still :mod:`nex_interp.zoo`.
"""
