"""Copy drills: the base stage's first phase (docs/zoo-design.md, change 10)."""

from __future__ import annotations

import pytest

from nex_interp.zoo.drills import MAX_LEN, MIN_LEN, content_tokens, copy_drills
from nex_interp.zoo.task import BOS, EOS, WORDS, vocabulary
from nex_interp.zoo.train import CURRICULUM, Phase, Stage, ZooTrainConfig, _examples


def test_a_drill_is_a_sequence_and_its_copy():
    drills = list(copy_drills(50, seed=3))
    assert len(drills) == 50
    for prompt, response in drills:
        seq = prompt[1:]
        assert prompt[0] == BOS and response == [*seq, EOS]
        assert MIN_LEN <= len(seq) <= MAX_LEN and len(set(seq)) == len(seq)  # no token twice
        assert set(seq) <= set(content_tokens())
    assert list(copy_drills(50, seed=3)) == drills and list(copy_drills(50, seed=4)) != drills


def test_drills_draw_content_tokens_only():
    pool = set(content_tokens())
    assert pool.isdisjoint(WORDS) and pool.isdisjoint({BOS, EOS, "<pad>", "<unk>"})
    assert {"b1", "#1", "*7", "557"} <= pool and pool <= set(vocabulary())


def test_the_base_starts_with_a_drill_phase():
    assert CURRICULUM[0].copies == 1.0 and CURRICULUM[0].mixed == 0.0
    assert all(p.copies == 0.0 for p in CURRICULUM[1:])
    drills = list(_examples(5, 9, {"systematic": 1.0}, CURRICULUM[0]))
    assert all(p[1:] == r[:-1] for p, r in drills)
    # a phase with a share of drills mixes them with problems
    mixed = list(_examples(60, 9, {"systematic": 1.0}, Phase(1.0, copies=0.5)))
    n_drills = sum(p[1:] == r[:-1] for p, r in mixed)
    assert 10 < n_drills < 50
    assert any(r[0] == "goal" for _, r in mixed)


def test_phase_copies_round_trips_through_the_manifest():
    cfg = ZooTrainConfig(stages=(Stage("base", None, (("brief", 1.0),), 4, 1e-3, 1, CURRICULUM),))
    assert ZooTrainConfig.from_dict(cfg.to_dict()) == cfg


def test_drill_accuracy_counts_the_copies():
    torch = pytest.importorskip("torch")
    from nex_interp.zoo.drills import drill_accuracy

    ids = {w: i for i, w in enumerate(vocabulary())}

    class Oracle(torch.nn.Module):
        """Predicts, at each position, the token that followed the current one earlier (an ideal
        induction head)."""

        training = False

        def forward(self, input_ids):
            seq = input_ids[0].tolist()
            logits = torch.zeros(1, len(seq), len(ids))
            for i, t in enumerate(seq):
                earlier = [j for j in range(i) if seq[j] == t]
                if earlier:
                    logits[0, i, seq[earlier[-1] + 1]] = 1.0
            return type("Out", (), {"logits": logits})()

    assert drill_accuracy(Oracle(), n=4) == 1.0
