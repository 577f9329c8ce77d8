"""The published augmentation policies: shapes, determinism, label integrity, geometry, validate offsets, bad input."""

import numpy as np
import pytest
import torch

from medseg.data.transforms import (
    POLICIES,
    AugmentationPolicy,
    TrainTransform,
    Transformations,
    ValidateTransform,
    affine_matrix,
    pad_to_min_size,
    minmax_normalize,
    pull_coordinates,
    rotation_matrix,
    sample_bilinear_clamped,
    sample_nearest_clamped,
    warp_label_per_class,
)
from medseg.phantom.tiny import phantom

ACDC_SIZES = dict(pad_size=(224, 224, 1), crop_size=(192, 192, 1))  # the sizes of the ACDC configs


def _slice(h=72, w=80, seed=0):
    image, label = phantom((3, h, w), np.random.default_rng(seed))
    return image[1][..., None], label[1][..., None]


def _marker(size=224):
    """Asymmetric test image: a bright block in the top-left quadrant, a dim one in the bottom-left."""
    image = np.zeros((size, size, 1), np.float32)
    label = np.zeros((size, size, 1), np.uint8)
    image[40:70, 50:90] = 1.0
    label[40:70, 50:90] = 1
    image[150:170, 40:60] = 0.5
    label[150:170, 40:60] = 2
    return image, label


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("hw", [(72, 80), (220, 240), (230, 190)])
def test_train_output_shapes_dtypes_ranges(policy, hw):
    image, label = _slice(*hw)
    train = Transformations(policy, **ACDC_SIZES).get_transformation()["train"]
    out_image, out_label = train(image, label, np.random.default_rng(3))
    assert out_image.shape == (1, 192, 192) and out_image.dtype == torch.float32
    assert out_label.shape == (1, 192, 192) and out_label.dtype == torch.int64
    assert float(out_image.min()) >= -1e-6 and float(out_image.max()) <= 1 + 1e-6
    assert set(out_label.unique().tolist()) <= {0, 1, 2, 3}


def test_seeded_determinism_and_unseeded_variability():
    image, label = _slice()
    train = Transformations("ACDC_affine_elastic_intensity", **ACDC_SIZES).get_transformation()["train"]
    a = train(image, label, np.random.default_rng(7))
    b = train(image, label, np.random.default_rng(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outputs = [train(image, label, np.random.default_rng())[0] for _ in range(4)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])


def test_label_integrity_through_augmentation():
    image, label = _slice(220, 240)
    classes = set(np.unique(label).tolist())
    always_elastic = TrainTransform(POLICIES["ACDC_affine_elastic_intensity"].__class__(
        **{**POLICIES["ACDC_affine_elastic_intensity"].__dict__, "elastic_prob": 1.0}))
    train = Transformations("ACDC_affine_elastic_intensity", **ACDC_SIZES).get_transformation()["train"]
    for seed in range(6):
        for transform in (train, always_elastic):
            _, out_label = transform(image, label.copy(), np.random.default_rng(seed))
            values = set(out_label.unique().tolist())
            assert values <= classes
            assert values >= {0, 1}  # the LV sits near the centre and survives ±10 % shifts


def test_label_warp_matches_full_per_class_warp():
    from scipy import ndimage

    _, label = _slice(224, 224)
    label = label[..., 0]
    rng = np.random.default_rng(0)
    base = np.stack(np.mgrid[16:208, 16:208]).astype(float)
    for _ in range(5):
        coords = base + ndimage.gaussian_filter(rng.uniform(-1, 1, (2, 192, 192)), (0, 6, 6)) * 300
        reference = np.zeros((192, 192), np.uint8)
        for value in np.unique(label):
            warped = ndimage.map_coordinates((label == value).astype(float), coords, order=3, mode="nearest")
            reference[warped >= 0.5] = value
        np.testing.assert_array_equal(warp_label_per_class(label, coords), reference)


def test_both_flips_land_where_expected():
    image, label = _marker()
    flips = TrainTransform(AugmentationPolicy(flip_prob=1.0))
    out_image, out_label = flips(image, label, np.random.default_rng(0))
    expected = label[::-1, ::-1, 0][16:208, 16:208]
    np.testing.assert_array_equal(out_label[0].numpy(), expected)
    # the bright top-left block is now bottom-right
    rows, cols = np.nonzero(out_label[0].numpy() == 1)
    assert rows.min() > 96 and cols.min() > 96
    np.testing.assert_allclose(out_image[0].numpy(), minmax_normalize(image[::-1, ::-1, 0][16:208, 16:208]), atol=1e-6)


def test_rotation_by_90_lands_where_expected():
    image, label = _marker()
    rotate = TrainTransform(AugmentationPolicy(rotate_group_degrees=90.0))
    for seed in range(6):
        draws = np.random.default_rng(seed)
        draws.random(), draws.random(), draws.random()  # flips (2) and intensity (1) are drawn first
        k = int(draws.integers(4))
        out_image, out_label = rotate(image, label, np.random.default_rng(seed))
        # a pull rotation by +90° k times shows the image turned clockwise k times (np.rot90 with -k)
        expected_label = np.rot90(label[..., 0], -k)[16:208, 16:208]
        np.testing.assert_array_equal(out_label[0].numpy(), expected_label)
        np.testing.assert_allclose(
            out_image[0].numpy(), minmax_normalize(np.rot90(image[..., 0], -k)[16:208, 16:208]), atol=1e-5
        )
    coords = pull_coordinates(rotation_matrix(90), (224, 224), slice(0, 224), slice(0, 224))
    rotated = sample_nearest_clamped(label[..., 0], coords)
    rows, cols = np.nonzero(rotated == 1)
    assert rows.max() < 112 and cols.min() > 112  # top-left block → top-right


def test_composed_warp_close_to_sequential():
    """One composed resampling ≈ affine then 45° rotation (differences only from the double interpolation)."""
    image, label = _slice(224, 224)
    img, lab = image[..., 0], label[..., 0]
    full = (slice(0, 224), slice(0, 224))
    affine = affine_matrix(10.0, 8.0, -5.0, 0.9, 1.05)
    step1 = pull_coordinates(affine, (224, 224), *full)
    step2 = pull_coordinates(rotation_matrix(45), (224, 224), *full)
    seq_img = sample_bilinear_clamped(sample_bilinear_clamped(img, step1), step2)
    seq_lab = sample_nearest_clamped(sample_nearest_clamped(lab, step1), step2)
    both = pull_coordinates(affine @ rotation_matrix(45), (224, 224), *full)
    one_img, one_lab = sample_bilinear_clamped(img, both), sample_nearest_clamped(lab, both)
    inner = (slice(16, 208), slice(16, 208))
    assert np.abs(one_img[inner] - seq_img[inner]).mean() < 0.03
    assert (one_lab[inner] == seq_lab[inner]).mean() > 0.98


@pytest.mark.parametrize("hw,rows,cols", [((220, 240), (14, 206), (24, 216)), ((221, 181), (14, 206), (0, 181))])
def test_validate_transform_offsets_and_determinism(hw, rows, cols):
    h, w = hw
    image = np.random.default_rng(0).random((h, w, 1)).astype(np.float32) + 1.0
    label = (np.arange(h * w).reshape(h, w, 1) % 4).astype(np.uint8)
    validate = Transformations("no_aug", **ACDC_SIZES).get_transformation()["validate"]
    out_image, out_label = validate(image, label)
    again = validate(image, label, np.random.default_rng(5))
    assert torch.equal(out_image, again[0]) and torch.equal(out_label, again[1])
    # pad 224 (before = ceil(diff/2)), then crop [16, 208): original rows/cols inside the window
    r0 = 16 - (224 - h + 1) // 2 if h < 224 else (h - 192 + 1) // 2
    assert r0 == rows[0]
    got = out_label[0].numpy()
    c_dst = (192 - (cols[1] - cols[0]) + 1) // 2 if w < 192 else 0
    expected = label[rows[0] : rows[1], cols[0] : cols[1], 0]
    np.testing.assert_array_equal(got[:, c_dst : c_dst + cols[1] - cols[0]], expected)
    assert float(out_image.min()) == pytest.approx(0.0, abs=1e-6) and float(out_image.max()) == pytest.approx(1.0)


def test_no_aug_train_equals_validate():
    image, label = _slice()
    transforms = Transformations("no_aug", **ACDC_SIZES).get_transformation()
    a, b = transforms["train"](image, label, np.random.default_rng(1)), transforms["validate"](image, label)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_unknown_policy_lists_valid_names():
    with pytest.raises(ValueError, match="ACDC_affine_elastic_intensity") as info:
        Transformations("ACDC_everything")
    assert "no_aug" in str(info.value)


@pytest.mark.parametrize("crop", [(200, 192, 1), (192, 100, 1)])
def test_crop_not_divisible_by_16(crop):
    with pytest.raises(ValueError, match="multiples of 16"):
        Transformations("no_aug", crop_size=crop)


def test_pad_smaller_than_crop_and_bad_shapes():
    with pytest.raises(ValueError, match="pad_size"):
        Transformations("no_aug", pad_size=(128, 128, 1), crop_size=(192, 192, 1))
    with pytest.raises(ValueError, match="crop_size"):
        Transformations("no_aug", crop_size=(192, 192, 3))
    validate = ValidateTransform()
    with pytest.raises(ValueError, match=r"\(H, W, 1\)"):
        validate(np.zeros((10, 10), np.float32), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="label"):
        validate(np.zeros((10, 10, 1), np.float32), np.zeros((10, 11, 1), np.uint8))


def test_alias_module():
    from medseg.dataset_loader import transform  # the published alias module

    assert transform.Transformations is Transformations


def test_published_default_sizes():
    transforms = Transformations("no_aug")
    assert transforms.pad_hw == (80, 80) and transforms.crop_hw == (80, 80)
    image, label = _slice(72, 80)
    out_image, out_label = transforms.get_transformation()["validate"](image, label)
    assert out_image.shape == out_label.shape == (1, 80, 80)


def test_padding_is_numpy_minimum_per_row_and_column():
    """Published PadNumpy semantics: np.pad(mode='minimum'), not one global minimum; labels padded with 0."""
    rng = np.random.default_rng(0)
    image = (rng.random((5, 4, 1)) + np.arange(4)[None, :, None]).astype(np.float32)  # column minima differ
    padded = pad_to_min_size(image, (9, 7))
    np.testing.assert_array_equal(padded, np.pad(image, ((2, 2), (2, 1), (0, 0)), mode="minimum"))
    core = padded[2:7, 2:6, 0]
    np.testing.assert_array_equal(core, image[..., 0])
    for j in range(4):  # rows added above/below: minimum of their own column
        column_min = image[:, j, 0].min()
        assert np.all(padded[:2, 2 + j, 0] == column_min) and np.all(padded[7:, 2 + j, 0] == column_min)
    for i in range(5):  # columns added left/right: minimum of their own row
        assert np.all(padded[2 + i, :2, 0] == image[i, :, 0].min()) and padded[2 + i, 6, 0] == image[i, :, 0].min()
    assert len(np.unique(padded[:2, 2:6, 0])) == 4  # not one global minimum
    label = np.full((5, 4, 1), 3, np.uint8)
    assert np.all(pad_to_min_size(label, (9, 7), fill=0)[:2] == 0)
    assert pad_to_min_size(image, (5, 4)) is image  # nothing to pad


def test_validate_transform_pads_with_row_and_column_minima():
    image = np.tile(np.linspace(0.2, 1.0, 200, dtype=np.float32)[None, :, None], (180, 1, 1))  # rows equal
    image[:, :100] += np.linspace(0, 0.1, 180, dtype=np.float32)[:, None, None]  # left half varies by row
    label = np.zeros((180, 200, 1), np.uint8)
    out, _ = ValidateTransform((224, 224), (224, 224))(image, label)
    expected = np.pad(image[..., 0], ((22, 22), (12, 12)), mode="minimum")
    lo, hi = expected.min(), expected.max()
    np.testing.assert_allclose(out[0].numpy(), (expected - lo) / (hi - lo + 1e-8), atol=1e-6)


@pytest.mark.parametrize("sigma", [0.7, 3.0, 17.0, 33.9])
def test_fft_gaussian_equals_the_direct_zero_border_filter(sigma):
    from scipy import ndimage

    from medseg.data.transforms import gaussian_filter_zero_border

    field = np.random.default_rng(1).uniform(-1, 1, (220, 240))
    expected = ndimage.gaussian_filter(field, sigma, mode="constant", cval=0.0)
    np.testing.assert_allclose(gaussian_filter_zero_border(field, sigma), expected, rtol=0, atol=1e-13)


def test_windowed_label_warp_is_bit_identical_near_borders():
    """Classes touching the image border and positions pulled from outside the image."""
    from scipy import ndimage

    rng = np.random.default_rng(2)
    label = np.zeros((224, 224), np.uint8)
    label[:6, 50:120] = 3
    label[100:150, 180:] = 1
    label[60:90, 60:90] = 2
    coords = np.stack(np.mgrid[16:208, 16:208]).astype(float) + rng.uniform(-40, 40, (2, 1, 1))
    coords += ndimage.gaussian_filter(rng.uniform(-1, 1, (2, 192, 192)), (0, 5, 5)) * 400
    reference = np.zeros((192, 192), np.uint8)
    for value in (1, 2, 3):
        warped = ndimage.map_coordinates((label == value).astype(float), coords, order=3, mode="nearest")
        reference[warped >= 0.5] = value
    np.testing.assert_array_equal(warp_label_per_class(label, coords), reference)


def test_compression_ablation_only_adds_a_final_contrast_compression():
    """The ablation policy is the published one plus, at its very end, x -> (1 - c) x + c g (c <= 0.6): the same
    geometry and labels for the same seed, the published random stream untouched, and about half the samples compressed."""
    image, label = _slice(220, 240)
    sizes = dict(pad_hw=(224, 224), crop_hw=(192, 192))
    published = TrainTransform(POLICIES["ACDC_affine_elastic_intensity"], **sizes)
    ablation = TrainTransform(POLICIES["ACDC_affine_elastic_intensity_compression"], **sizes)
    compressed = 0
    for seed in range(24):
        ref_rng, abl_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        ref_image, ref_label = published(image, label, ref_rng)
        abl_image, abl_label = ablation(image, label, abl_rng)
        assert torch.equal(ref_label, abl_label)
        ref, out = ref_image.double().flatten(), abl_image.double().flatten()
        assert float(ref.min()) == pytest.approx(0, abs=1e-6) and float(ref.max()) == pytest.approx(1, abs=1e-6)
        if torch.equal(ref_image, abl_image):
            assert ref_rng.random() != abl_rng.random()  # the ablation drew once more (its coin) and lost
            continue
        compressed += 1
        slope = float(out.max() - out.min())
        assert 0.4 - 1e-6 <= slope < 1.0
        level = float(out.min()) / (1 - slope)  # out = slope * ref + (1 - slope) * g
        assert 0.25 - 1e-6 <= level <= 0.75 + 1e-6
        torch.testing.assert_close(out, slope * ref + (1 - slope) * level, atol=1e-5, rtol=0)
    assert 6 <= compressed <= 18
    assert not POLICIES["ACDC_affine_elastic_intensity_compression"].is_identity
    assert POLICIES["ACDC_affine_elastic_intensity"].compression_prob == 0  # the published policies never draw it
