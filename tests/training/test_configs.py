"""Every shipped training config loads: no unknown key, no value of the wrong type."""

from __future__ import annotations

import pytest

from zhenping.training.config import CONFIG_DIR, load_config
from zhenping.training.finetune import FinetuneConfig
from zhenping.training.gpu_teacher import TeacherConfig
from zhenping.training.multitask import MultitaskConfig
from zhenping.training.pretrain import PretrainConfig

KINDS = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "multitask": MultitaskConfig,
         "gpu_teacher": TeacherConfig}
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.toml"))


def test_every_config_has_a_known_kind():
    assert len(CONFIGS) > 20
    assert [n for n in CONFIGS if not n.startswith(tuple(KINDS))] == []


@pytest.mark.parametrize("name", CONFIGS)
def test_the_config_loads(name):
    cls = next(c for prefix, c in KINDS.items() if name.startswith(prefix))
    config = load_config(cls, name)
    assert isinstance(config, cls)


def test_a_wrong_key_is_named():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['lrr'\] for FinetuneConfig"):
        load_config(FinetuneConfig, "finetune_v7.toml", {"lrr": "1e-4"})
