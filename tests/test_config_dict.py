"""Typed settings round-trip through plain (JSON) dicts, and unknown keys are one-line errors."""

from __future__ import annotations

import json

import pytest

from nex_interp.cache.synthetic import SynthConfig
from nex_interp.capture.engine import CaptureConfig
from nex_interp.core import NexParams
from nex_interp.errors import ConfigError
from nex_interp.generation import GenerationConfig
from nex_interp.selection.pipeline import SelectConfig
from nex_interp.sensitivity import SweepSpec
from nex_interp.zoo.experiment.config import DemoConfig

CONFIGS = [
    CaptureConfig(layers=(0, 2), row_tokens=8, attention="eager"),
    SelectConfig(rho=0.9),
    SynthConfig(responses=3, dirty=True),
    GenerationConfig(samples=2),
    DemoConfig.quick(seed=4),
    SweepSpec(rhos=(0.8, 0.95)),
    NexParams(rho=0.9, min_run=3),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_round_trip_through_json(config):
    again = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize("cls", [CaptureConfig, SelectConfig, SynthConfig, GenerationConfig, DemoConfig, SweepSpec])
def test_unknown_settings_name_the_valid_ones(cls):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}: unknown setting\(s\) colour; valid: "):
        cls.from_dict({"colour": 1})


def test_nex_defaults_come_from_nex_params():
    assert (SelectConfig().rho, SelectConfig().min_run) == (NexParams().rho, NexParams().min_run)
