"""NIfTI input/output with geometry, used by every reader and writer in medseg.

Arrays follow SimpleITK's axis order: a 3D volume is ``(Z, H, W)`` (slice, row, column) and a 4D cine volume is
``(T, Z, H, W)``. Geometry tuples (``spacing``, ``origin``) follow ITK's physical order ``(x, y, z[, t])``, and
``direction`` is the flattened row-major direction-cosine matrix. Rotated qform/sform affines of scanner data are kept
as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.utils.io import atomic_output_path

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Volume:
    """A voxel array with its physical geometry.

    Attributes:
        array: ``(Z, H, W)`` for 3D or ``(T, Z, H, W)`` for 4D data.
        spacing: voxel size in mm, ``(x, y, z[, t])`` (x runs along W, y along H, z along Z).
        origin: physical position of the first voxel, ``(x, y, z[, t])``.
        direction: flattened ``ndim × ndim`` direction-cosine matrix.
        path: the file it was read from, if any (used in error messages).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    path: Path | None = None

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<in-memory volume>"

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry, new voxels (the shape must keep the number of dimensions)."""
        if array.ndim != self.array.ndim:
            raise ValueError(f"with_array expects a {self.array.ndim}D array, got shape {array.shape}")
        return replace(self, array=array)


def read_volume(
    path: PathLike,
    ndim: int | None = 3,
    dtype: np.dtype | type | None = None,
    allow_nonfinite: bool = False,
) -> Volume:
    """Read a NIfTI (or any SimpleITK-readable) file.

    Args:
        path: file to read.
        ndim: expected number of dimensions (3 or 4); ``None`` accepts both.
        dtype: cast the array to this dtype (``None`` keeps the stored type).
        allow_nonfinite: if False, NaN or Inf voxels are an error.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is empty, unreadable, has the wrong number of dimensions or non-finite voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"volume file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"volume file is empty (0 bytes): {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ValueError(f"cannot read volume {path}: {str(err).strip().splitlines()[-1]}") from err
    array = sitk.GetArrayFromImage(image)
    if ndim is not None and array.ndim != ndim:
        kind = {3: "a 3D volume (Z, H, W)", 4: "a 4D cine volume (T, Z, H, W)"}.get(ndim, f"{ndim}D data")
        raise ValueError(f"{path}: expected {kind}, got an array of shape {array.shape} ({array.ndim}D)")
    if array.size == 0:
        raise ValueError(f"{path}: the volume has no voxels (shape {array.shape})")
    stored_float = image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
    if not allow_nonfinite and stored_float:
        n_bad = int((~np.isfinite(array)).sum()) or _nonfinite_in_nifti(path)
        if n_bad:
            raise ValueError(f"{path}: {n_bad} voxels are NaN or Inf; expected finite intensities")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return Volume(
        array=array,
        spacing=tuple(float(s) for s in image.GetSpacing()),
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
        path=path,
    )


def _nonfinite_in_nifti(path: Path) -> int:
    """Count NaN/Inf voxels of a float NIfTI file as stored (ITK's NIfTI reader silently turns them into 0)."""
    if not path.name.endswith((".nii", ".nii.gz")):
        return 0
    import nibabel as nib

    data = np.asanyarray(nib.load(str(path)).dataobj)
    return int((~np.isfinite(data)).sum()) if np.issubdtype(data.dtype, np.floating) else 0


def to_sitk(volume: Volume) -> sitk.Image:
    """Convert a :class:`Volume` to a SimpleITK image carrying its geometry."""
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    return image


def from_sitk(image: sitk.Image, path: Path | None = None) -> Volume:
    """Convert a SimpleITK image to a :class:`Volume`."""
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing=tuple(float(s) for s in image.GetSpacing()),
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
        path=path,
    )


def identity_geometry(ndim: int, spacing: tuple[float, ...] | None = None) -> dict[str, tuple[float, ...]]:
    """Geometry keywords for :func:`write_volume` with unit/identity values."""
    return {
        "spacing": tuple(spacing) if spacing is not None else (1.0,) * ndim,
        "origin": (0.0,) * ndim,
        "direction": tuple(np.eye(ndim).ravel().tolist()),
    }


def write_volume(
    path: PathLike,
    array: np.ndarray,
    reference: Volume | None = None,
    *,
    spacing: tuple[float, ...] | None = None,
    origin: tuple[float, ...] | None = None,
    direction: tuple[float, ...] | None = None,
) -> Path:
    """Write ``array`` atomically with the geometry of ``reference`` (explicit keywords override it).

    Args:
        path: output file (``.nii.gz`` for NIfTI).
        array: ``(Z, H, W)`` or ``(T, Z, H, W)`` voxels.
        reference: volume whose spacing/origin/direction are copied (its array shape must match in ndim).
        spacing, origin, direction: explicit geometry, ITK order.

    Returns:
        The written path.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3, 4):
        raise ValueError(f"cannot write {path}: expected a 2D, 3D or 4D array, got shape {array.shape}")
    geometry = identity_geometry(array.ndim)
    if reference is not None:
        if reference.ndim != array.ndim:
            raise ValueError(
                f"cannot write {path}: array is {array.ndim}D but the reference geometry ({reference.name}) is "
                f"{reference.ndim}D"
            )
        geometry = {"spacing": reference.spacing, "origin": reference.origin, "direction": reference.direction}
    for key, value in (("spacing", spacing), ("origin", origin), ("direction", direction)):
        if value is not None:
            geometry[key] = tuple(float(v) for v in value)
    volume = Volume(array=array, **geometry)
    image = to_sitk(volume)
    path = Path(path)
    with atomic_output_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


def read_image_label_pair(image_path: PathLike, label_path: PathLike, ndim: int | None = 3) -> tuple[Volume, Volume]:
    """Read an image and its label map and check that their voxel grids agree.

    Raises:
        ValueError: naming the label file if its shape differs from the image's.
    """
    image = read_volume(image_path, ndim=ndim, dtype=np.float32)
    label = read_volume(label_path, ndim=ndim)
    if label.array.shape != image.array.shape:
        raise ValueError(
            f"label {label_path} has shape {label.array.shape} but its image {image_path} has shape "
            f"{image.array.shape}; expected identical voxel grids"
        )
    return image, label


def check_label_values(label: Volume, allowed: set[int] | frozenset[int]) -> None:
    """Raise ``ValueError`` naming the file if the label map holds values outside ``allowed``."""
    values = np.unique(label.array)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f"{label.name}: label map holds non-integer values; expected integers in {sorted(allowed)}")
    unexpected = sorted(set(int(v) for v in values) - set(allowed))
    if unexpected:
        raise ValueError(f"{label.name}: unexpected label values {unexpected}; expected only {sorted(allowed)}")
