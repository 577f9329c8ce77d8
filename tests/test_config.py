"""Config loading: published schema, validation errors naming the key, --set overrides, run-folder names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config import (
    ExperimentConfig,
    apply_overrides,
    config_name_from_path,
    from_dict,
    load_config,
    method_name,
    parse_override,
)

REPO = Path(__file__).resolve().parents[1]
ACDC = REPO / "config" / "ACDC"
QUICKSTART = REPO / "config" / "quickstart"


def test_published_configs_load_with_published_values() -> None:
    coop = load_config(ACDC / "cooperative_training.json")
    std = load_config(ACDC / "standard_training.json")
    assert coop.learning.latent_da is True and std.learning.latent_da is False
    assert coop.data.frame == ("ES", "ED")
    assert coop.data.pad_size == (224, 224, 1) and coop.data.crop_size == (192, 192, 1)
    assert coop.learning.lr == 1e-4 and coop.learning.batch_size == 20 and coop.learning.n_epochs == 600
    assert coop.learning.max_iteration is None  # no cap: 600 epochs in every data setting, as published
    assert coop.latent_da.mask_scope == ("image code", "shape code")
    assert coop.latent_da.image_code.loss_name == "mse" and coop.latent_da.shape_code.loss_name == "ce"
    assert coop.output.save_epoch_every_num_epochs == 100
    assert not Path(coop.data.root_dir).is_absolute()
    raw_coop = json.loads((ACDC / "cooperative_training.json").read_text())
    raw_std = json.loads((ACDC / "standard_training.json").read_text())
    for raw in (raw_coop, raw_std):  # identical apart from latent_DA and name
        raw["learning"].pop("latent_DA")
        raw.pop("name")
    assert raw_coop == raw_std


@pytest.mark.parametrize("name", ["cooperative_training", "standard_training"])
def test_quickstart_configs_are_the_same_method(name: str) -> None:
    quick, full = load_config(QUICKSTART / f"{name}.json"), load_config(ACDC / f"{name}.json")
    assert quick.learning.latent_da == full.learning.latent_da
    assert quick.latent_da == full.latent_da and quick.segmentation_model == full.segmentation_model
    # what the configs say when trained on their own is what the first run (README command (a)) trains with
    budget = json.loads((QUICKSTART.parent / "experiment" / "first_run.json").read_text())
    assert (quick.learning.lr, quick.learning.batch_size, quick.learning.n_epochs, quick.learning.lr_schedule) == (
        budget["lr"], budget["batch_size"], budget["n_epochs"], budget.get("lr_schedule", "constant"))
    assert full.learning.lr_schedule == "constant"  # the published training has no schedule


def test_round_trip_keeps_published_keys(tmp_path: Path) -> None:
    config = load_config(ACDC / "cooperative_training.json")
    text = config.to_json()
    raw = json.loads(text)
    assert "image code" in raw["latent_DA"] and "latent_DA" in raw["learning"]
    path = tmp_path / "c.json"
    path.write_text(text)
    assert load_config(path) == config


def test_missing_keys_take_published_defaults() -> None:
    assert from_dict({}) == ExperimentConfig()
    assert from_dict({"learning": {"latent_DA": False}}).learning.batch_size == 20


def test_partial_masking_section_keeps_that_code_s_defaults() -> None:
    """A "shape code" section without loss_name probes with cross entropy (the shape code's default), an "image
    code" section without it with MSE; the keys given still win."""
    partial = from_dict({"latent_DA": {"image code": {"mask_type": "channel"}, "shape code": {"mask_type": "spatial"}}})
    assert partial.latent_da.shape_code.loss_name == "ce" and partial.latent_da.shape_code.mask_type == "spatial"
    assert partial.latent_da.image_code.loss_name == "mse" and partial.latent_da.image_code.mask_type == "channel"
    given = from_dict({"latent_DA": {"shape code": {"loss_name": "mse", "max_threshold": 0.3}}})
    assert given.latent_da.shape_code.loss_name == "mse" and given.latent_da.shape_code.max_threshold == 0.3


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"data": {"crop": [1, 2, 3]}}, "data.crop"),
        ({"typo_section": {}}, "typo_section"),
        ({"latent_DA": {"image code": {"soft": True}}}, "latent_DA.image code.soft"),
        ({"learning": {"lr": "fast"}}, "learning.lr"),
        ({"learning": {"n_epochs": 2.5}}, "learning.n_epochs"),
        ({"learning": {"latent_DA": 1}}, "learning.latent_DA"),
        ({"data": {"crop_size": [192, 192]}}, "data.crop_size"),
        ({"data": {"crop_size": [192, "a", 1]}}, "data.crop_size[1]"),
        ({"data": {"frame": ["ES", "XX"]}}, "data.frame"),
        ({"latent_DA": {"mask_scope": ["image code", "style code"]}}, "latent_DA.mask_scope"),
        ({"latent_DA": {"shape code": {"mask_type": "everything"}}}, "latent_DA.shape code.mask_type"),
        ({"latent_DA": {"image code": {"max_threshold": 1.5}}}, "latent_DA.image code.max_threshold"),
        ({"output": {"save_epoch_every_num_epochs": 0}}, "output.save_epoch_every_num_epochs"),
        ({"segmentation_model": {"network_type": "UNet"}}, "segmentation_model.network_type"),
        ({"learning": []}, "learning"),
    ],
)
def test_invalid_values_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'".replace("[", r"\[").replace("]", r"\]")):
        from_dict(raw)


def test_published_unused_keys_are_accepted() -> None:
    config = from_dict({"name": "x", "data": {"image_size": [1, 2, 3], "label_size": [4, 5]},
                        "learning": {"use_gpu": False, "max_iteration": 7}})
    assert config.data.image_size == (1, 2, 3) and config.learning.max_iteration == 7


def test_single_frame_string_is_accepted() -> None:
    assert from_dict({"data": {"frame": "ED"}}).data.frame == ("ED",)


def test_overrides_are_json_typed() -> None:
    raw = json.loads((ACDC / "cooperative_training.json").read_text())
    config = from_dict(apply_overrides(raw, [
        "learning.n_epochs=5", "learning.latent_DA=false", "data.root_dir=some/where", "data.crop_size=[64,64,1]",
        "latent_DA.image code.max_threshold=0.25", "latent_DA.shape_code.mask_type=channel", "learning.lr=1e-3",
    ]))
    assert config.learning.n_epochs == 5 and config.learning.latent_da is False
    assert config.data.root_dir == "some/where" and config.data.crop_size == (64, 64, 1)
    assert config.latent_da.image_code.max_threshold == 0.25
    assert config.latent_da.shape_code.mask_type == "channel"
    assert config.learning.lr == 1e-3
    assert raw["learning"]["n_epochs"] == 600  # the input is not modified


def test_override_snake_case_field_names_map_to_published_keys() -> None:
    config = from_dict(apply_overrides({}, ["latent_da.image_code.if_soft=false", "learning.latent_da=false"]))
    assert config.latent_da.image_code.if_soft is False and config.learning.latent_da is False


@pytest.mark.parametrize("text", ["learning.n_epochs", "=5", "learning..lr=1"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override(text)


def test_override_of_unknown_key_and_wrong_type_fail(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'learning.n_epoch'"):
        load_config(ACDC / "cooperative_training.json", ["learning.n_epoch=5"])
    with pytest.raises(ValueError, match="'learning.n_epochs'"):
        load_config(ACDC / "cooperative_training.json", ["learning.n_epochs=five"])
    with pytest.raises(ValueError, match="is a value, not a section"):
        apply_overrides({"learning": {"lr": 1.0}}, ["learning.lr.x=1"])


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  'data': 1\n}")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        load_config(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"learning": {"batch_size": 0}}')
    with pytest.raises(ValueError, match="wrong.json.*'learning.batch_size'"):
        load_config(wrong)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("./config/ACDC/cooperative_training.json", "ACDC/cooperative_training"),
        ("config/ACDC/standard_training.json", "ACDC/standard_training"),
        ("./config/quickstart/cooperative_training.json", "quickstart/cooperative_training"),
        ("/abs/elsewhere/config/ACDC/x.json", "ACDC/x"),
        ("/tmp/experiments/my_run.json", "experiments/my_run"),
        ("my_run.json", "my_run"),
    ],
)
def test_config_name(path: str, name: str) -> None:
    assert config_name_from_path(path) == name


# ------------------------------------------------------------------------------ reliability
@pytest.mark.parametrize("text", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_numbers_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"learning": {"lr": %s}}' % text)
    with pytest.raises(ValueError, match="'learning.lr': expected a finite number"):
        load_config(path)
    with pytest.raises(ValueError, match="'learning.lr': expected a finite number"):
        load_config(ACDC / "cooperative_training.json", [f"learning.lr={text}"])
    with pytest.raises(ValueError, match="'latent_DA.image code.max_threshold': expected a finite number"):
        load_config(ACDC / "cooperative_training.json", [f"latent_DA.image code.max_threshold={text}"])


def test_duplicate_json_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"learning": {"lr": 0.001, "batch_size": 4, "lr": 10}}')
    with pytest.raises(ValueError, match=r"dup.json: config key 'lr' appears twice in one JSON object"):
        load_config(path)


@pytest.mark.parametrize(("raw", "key", "found"), [
    ({"data": {"num_classes": 3}, "segmentation_model": {"num_classes": 4}}, "data.num_classes", "3"),
    ({"data": {"num_classes": 2}, "segmentation_model": {"num_classes": 2}}, "data.num_classes", "2"),
    ({"learning": {"n_epochs": 0}}, "learning.n_epochs", "0"),
    ({"learning": {"max_iteration": 0}}, "learning.max_iteration", "0"),
    ({"learning": {"on_non_finite": "ignore"}}, "learning.on_non_finite", "'ignore'"),
    ({"data": {"dataset_name": "ACDC/../../x"}}, "data.dataset_name", "'ACDC/../../x'"),
    ({"data": {"dataset_name": ".."}}, "data.dataset_name", "'..'"),
    ({"data": {"image_format_name": "{pid}/{frame}_img.nii.gz"}}, "data.image_format_name", "unknown placeholder"),
    ({"data": {"label_format_name": "{frame}_seg.nii.gz"}}, "data.label_format_name", "{p_id} (required)"),
    ({"data": {"image_format_name": "{p_id/x"}}, "data.image_format_name", "expected a path template"),
])
def test_silently_accepted_values_are_now_errors(raw: dict, key: str, found: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'") as info:
        from_dict(raw)
    assert found in str(info.value)


def test_two_classes_are_fine_for_a_single_structure() -> None:
    config = from_dict({"data": {"num_classes": 2, "myocardium_only": True}, "segmentation_model": {"num_classes": 2}})
    assert config.data.num_classes == 2 and config.learning.on_non_finite == "stop"
    assert from_dict({"learning": {"on_non_finite": "skip"}}).learning.on_non_finite == "skip"


def test_text_keys_keep_the_override_text() -> None:
    config = from_dict(apply_overrides({}, ["data.root_dir=2024", "data.dataset_name=2024", "name=null"]))
    assert config.data.root_dir == "2024" and config.data.dataset_name == "2024" and config.name == "null"
    assert from_dict(apply_overrides({}, ["learning.n_epochs=7"])).learning.n_epochs == 7  # numbers stay numbers


def test_precision_key_is_validated_and_round_trips() -> None:
    assert from_dict({}).learning.precision == "fp32"
    config = from_dict({"learning": {"precision": "bf16"}})
    assert config.learning.precision == "bf16" and config.to_dict()["learning"]["precision"] == "bf16"
    with pytest.raises(ValueError,
                       match=r"config key 'learning.precision': expected one of \['fp32', 'tf32', 'bf16', 'bf16_emulated', "
                             r"'fp16', 'bf16_where_native'\]"):
        from_dict({"learning": {"precision": "float16"}})
    with pytest.raises(ValueError, match="learning.precision"):
        from_dict({"learning": {"precision": 16}})
    assert from_dict({"learning": {"precision": "bf16_emulated"}}).learning.precision == "bf16_emulated"


def test_config_knows_the_precisions_of_the_training_code() -> None:
    from medseg.config import PRECISIONS
    from medseg.nn import precision

    assert PRECISIONS == precision.TRAINING_PRECISIONS  # one list, written twice: reading a config needs no torch


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.data_aug_policy=nope"], "config key 'data.data_aug_policy': expected one of ['ACDC_affine'"),
        (["data.crop_size=[64,64,1]", "data.pad_size=[48,48,1]"],
         "config key 'data.pad_size': expected H and W at least those of data.crop_size [64, 64, 1]"),
        (["data.crop_size=[33,33,1]"], "config key 'data.crop_size': expected H and W each a multiple of 16"),
        (["data.crop_size=[4000,4000,1]", "data.pad_size=[4000,4000,1]"],
         "config key 'data.crop_size': expected H and W each a multiple of 16 from 16 to 1024"),
        (["data.crop_size=[224,224,3]", "data.pad_size=[224,224,3]"],
         "config key 'data.pad_size': expected [H, W, 1]: positive H and W and one channel"),
        (["data.crop_size=[192,192,3]"], "config key 'data.crop_size': expected [H, W, 1]"),
        (["data.new_spacing=[0.01,0.01]"], ("config key 'data.new_spacing': expected [x, y] or [x, y, z] with in-plane "
                                            "spacings in [0.1, 20] mm")),
        (["data.new_spacing=[500,500]"], "got [500.0, 500.0]"),
        (["latent_DA.mask_scope=[]"], ("config key 'latent_DA.mask_scope': expected at least one of ['image code', "
                                       "'shape code'] while learning.latent_DA is true")),
    ],
)
def test_data_values_the_training_cannot_use_name_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config(ACDC / "cooperative_training.json", overrides)
    assert str(info.value).startswith(f"{ACDC / 'cooperative_training.json'}: ") and expected in str(info.value)


def test_plausible_data_values_still_load() -> None:
    config = load_config(ACDC / "cooperative_training.json", ["data.new_spacing=[0.1,20]", "data.crop_size=[16,16,1]",
                                                               "data.pad_size=[16,16,1]"])
    assert config.data.new_spacing == (0.1, 20.0) and config.data.crop_size == config.data.pad_size == (16, 16, 1)
    standard = load_config(ACDC / "standard_training.json", ["latent_DA.mask_scope=[]"])  # nothing masked anyway
    assert standard.latent_da.mask_scope == ()


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text('[{"data": {}}]')
    with pytest.raises(ValueError, match=r"list\.json: expected a JSON object at the top level, got an array"):
        load_config(path, ["learning.n_epochs=1"])
    with pytest.raises(ValueError, match="expected a JSON object at the top level, got null"):
        apply_overrides(None, [])  # type: ignore[arg-type]


def test_null_section_in_the_file_is_named_not_the_override(tmp_path: Path) -> None:
    raw = json.loads((ACDC / "cooperative_training.json").read_text())
    raw["learning"] = None
    path = tmp_path / "null.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError) as info:
        load_config(path, ["learning.batch_size=4"])
    assert str(info.value) == (f"{path}: config key 'learning': expected a section (a JSON object), got null in the "
                               "file (needed by --set 'learning.batch_size=4')")
    with pytest.raises(ValueError, match="--set 'learning.batch_size=4': 'learning' is a value, not a section"):
        apply_overrides({}, ["learning=5", "learning.batch_size=4"])  # an earlier --set made it a value


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder, expected a JSON file"):
        load_config(tmp_path)


@pytest.mark.parametrize(("content", "missing"), [
    ({"name": "standard training", "data": {"num_classes": 4}}, "config section 'learning' is missing"),
    ({"learning": {"n_epochs": 5}}, "config key 'learning.latent_DA' is missing"),
])
def test_the_method_defining_keys_have_no_default(tmp_path: Path, content: dict, missing: str) -> None:
    """Without them a 'standard' config silently trained cooperative training for 600 epochs."""
    path = tmp_path / "standard.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=rf"^{path}: {missing}; expected .*true \(cooperative training\) or false \(standard training\)"):
        load_config(path)
    config = load_config(path, ["learning.latent_DA=false"])  # given explicitly on the command line
    assert method_name(config) == "standard training" and config.to_dict()["learning"]["latent_DA"] is False
    assert method_name(load_config(path, ["learning.latent_DA=true"])) == "cooperative training"


def test_the_published_configs_name_their_method() -> None:
    root = Path(__file__).resolve().parents[1] / "config"
    assert method_name(load_config(root / "ACDC" / "standard_training.json")) == "standard training"
    assert method_name(load_config(root / "ACDC" / "cooperative_training.json")) == "cooperative training"
    for path in root.rglob("*.json"):  # every shipped training config states its method
        raw = json.loads(path.read_text())
        if "learning" in raw or "latent_DA" in raw:
            assert "latent_DA" in raw["learning"], path
