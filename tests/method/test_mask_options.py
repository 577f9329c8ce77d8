"""One masking-options type: the configuration's latent_DA sections, the published DA-config dicts and the training
step all use :class:`MaskOptions`."""

from __future__ import annotations

import pytest

from medseg.config import from_dict
from medseg.method.mask_options import (
    IMAGE_CODE_OPTIONS,
    SHAPE_CODE_OPTIONS,
    MaskOptionError,
    MaskOptions,
    mask_scope_flags,
)
from medseg.models import model_util
from medseg.models.advanced_triplet_recon_segmentation_model import IMAGE_CODE_DA_CONFIG, SHAPE_CODE_DA_CONFIG


def test_config_sections_are_mask_options():
    config = from_dict({"learning": {"latent_DA": True},
                        "latent_DA": {"shape code": {"loss_name": "ce", "mask_type": "channel", "max_threshold": 0.25}}})
    assert type(config.latent_da.image_code) is MaskOptions and config.latent_da.image_code == IMAGE_CODE_OPTIONS
    assert config.latent_da.shape_code == MaskOptions(loss_name="ce", mask_type="channel", max_threshold=0.25)
    assert config.to_dict()["latent_DA"]["shape code"] == {**SHAPE_CODE_DA_CONFIG, "mask_type": "channel",
                                                           "max_threshold": 0.25}


def test_published_dicts_are_the_default_options():
    assert dict(IMAGE_CODE_DA_CONFIG) == IMAGE_CODE_OPTIONS.as_dict() == {
        "loss_name": "mse", "mask_type": "random", "max_threshold": 0.5, "random_threshold": True, "if_soft": True}
    assert dict(SHAPE_CODE_DA_CONFIG) == {**IMAGE_CODE_DA_CONFIG, "loss_name": "ce"}
    assert MaskOptions.from_mapping(IMAGE_CODE_DA_CONFIG, SHAPE_CODE_OPTIONS, "x") == IMAGE_CODE_OPTIONS
    assert model_util.MaskSpec is MaskOptions


def test_from_mapping_fills_defaults_and_names_unknown_keys():
    assert MaskOptions.from_mapping({"mask_type": "dropout"}, SHAPE_CODE_OPTIONS, "cfg") == MaskOptions(
        loss_name="ce", mask_type="dropout")
    assert MaskOptions.from_mapping(None, SHAPE_CODE_OPTIONS, "cfg") == SHAPE_CODE_OPTIONS
    with pytest.raises(ValueError, match=r"corrupted_seg_DA_config: unknown keys \['soft'\]"):
        MaskOptions.from_mapping({"soft": True}, SHAPE_CODE_OPTIONS, "corrupted_seg_DA_config")


@pytest.mark.parametrize(("kwargs", "key"), [({"loss_name": "l2"}, "loss_name"), ({"mask_type": "noise"}, "mask_type"),
                                             ({"max_threshold": 1.5}, "max_threshold")])
def test_out_of_range_options_name_the_option_and_the_config_key(kwargs, key):
    with pytest.raises(MaskOptionError, match=f"masking option '{key}'") as raised:
        MaskOptions(**kwargs)
    assert raised.value.key == key
    with pytest.raises(ValueError, match=f"config key 'latent_DA.shape code.{key}': expected"):
        from_dict({"learning": {"latent_DA": True}, "latent_DA": {"shape code": kwargs}})


def test_mask_scope_flags():
    assert mask_scope_flags(["shape code"]) == (False, True)
    with pytest.raises(ValueError, match="mask_scope"):
        mask_scope_flags(["style code"])
