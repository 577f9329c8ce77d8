"""NIfTI input/output with geometry, used by every reader and writer in medseg.

Arrays follow SimpleITK's axis order: a 3D volume is ``(Z, H, W)`` (slice, row, column) and a 4D cine volume is
``(T, Z, H, W)``. Geometry tuples (``spacing``, ``origin``) follow ITK's physical order ``(x, y, z[, t])``, and
``direction`` is the flattened row-major direction-cosine matrix. Rotated qform/sform affines of scanner data are kept
as they are: a volume written on the voxel grid of the NIfTI file it was read from (a label map predicted for a scan)
gets that file's qform/sform, voxel sizes and units unchanged (:func:`write_volume`), and a header that tools would
read as different grids is refused when it is read (:func:`check_header_geometry`).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.io.nifti_format import (
    GZIP_MAGIC,
    NIFTI_CODES,
    NiftiGeometry,
    NiftiHeader,
    check_voxel_bytes,
    check_voxel_sizes,
    decode_nifti_bytes,
    is_nifti_name,
    nifti1_header,
    parse_geometry,
    parse_header,
)
from medseg.io.atomic import atomic_output_path, free_space_note
from medseg.utils.paths import path_kind

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
    dtype: np.dtype | type | str | None = None,
    allow_nonfinite: bool = False,
) -> Volume:
    """Read a NIfTI (or any other SimpleITK-readable) file, refusing truncated or corrupt files.

    ``.nii``/``.nii.gz`` files are read once and decompressed once (the gzip CRC and length are verified); the voxel
    count is checked against the header, the geometry comes from SimpleITK (so it is exactly what ITK reports, LPS
    physical space, qform/sform choice included) and the voxels are decoded from the same bytes. NaN voxels are kept
    as NaN (ITK's NIfTI reader silently turns them into 0) so that they can be refused. A header whose qform and sform
    place the voxels differently, or whose ITK reading differs from the form other tools use (nibabel, FSL), is
    refused (:func:`check_header_geometry`): the grid is then ambiguous.

    Args:
        path: file to read.
        ndim: expected number of dimensions (3 or 4); ``None`` accepts both.
        dtype: cast the array to this dtype (``None`` keeps the stored type, after the header's scaling).
        allow_nonfinite: if False, NaN or Inf voxels are an error.

    Returns:
        The :class:`Volume`: ``(Z, H, W)`` or ``(T, Z, H, W)`` array, ITK geometry.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file if it is empty, truncated, corrupt, not a grayscale volume (RGB, vector,
            complex), has non-positive voxel sizes, an ambiguous geometry, the wrong number of dimensions, non-finite
            voxels, or values that do not fit ``dtype``.
    """
    path = _existing_file(path)
    if is_nifti_name(path):
        array, info = _read_nifti(path)
    else:
        array, info = _read_other(path)
    _check_ndim(array.shape, ndim, path)
    if array.size == 0:
        raise ValueError(f"{path}: the volume has no voxels (shape {array.shape})")
    if not allow_nonfinite and array.dtype.kind == "f":
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if n_bad:
            raise ValueError(f"{path}: {n_bad} voxels are NaN or Inf; expected finite intensities")
    if dtype is not None:
        array = _cast(array, np.dtype(dtype), path, "intensities")
    return Volume(array=array, spacing=info.spacing, origin=info.origin, direction=info.direction, path=path)


def _cast(array: np.ndarray, dtype: np.dtype, path: Path, what: str) -> np.ndarray:
    """``array.astype(dtype)``, refusing finite values that a narrower float type would turn into Inf.

    Raises:
        ValueError: naming the file, the largest magnitude and the type's limit.
    """
    if dtype.kind == "f" and array.dtype.kind == "f" and array.dtype.itemsize > dtype.itemsize and array.size:
        finite = np.abs(array[np.isfinite(array)])
        largest = float(finite.max()) if finite.size else 0.0
        limit = float(np.finfo(dtype).max)
        if largest > limit:
            raise ValueError(f"{path}: {what} up to {largest:.3g} are too large for {dtype.name} (at most "
                             f"{limit:.3g}); expected values that fit {dtype.name} (rescale the image, e.g. divide it "
                             "by a constant)")
    with np.errstate(over="ignore", invalid="ignore"):  # only rounding of in-range values is left
        return array.astype(dtype, copy=False)


@dataclass(frozen=True)
class VolumeInfo:
    """Header facts of a volume file (no voxel data read).

    Attributes:
        shape: array shape in SimpleITK order, ``(Z, H, W)`` or ``(T, Z, H, W)``.
        spacing, origin, direction: ITK geometry, as in :class:`Volume`.
        path: the file.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    path: Path

    @property
    def ndim(self) -> int:
        return len(self.shape)


#: bytes of a ``.nii.gz`` decompressed for a header-only read (header + typical extensions)
_HEADER_PROBE_BYTES = 1 << 16


def read_volume_info(path: PathLike, ndim: int | None = 3) -> VolumeInfo:
    """Read only the header of a volume file: shape and geometry, with the same checks as :func:`read_volume`.

    A truncated voxel section is not detected here (that needs the whole file); everything about the header is.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_volume`, naming the file.
    """
    path = _existing_file(path)
    if is_nifti_name(path):
        data, header = _header_probe(path)
        info = _sitk_header_info(data[: header.vox_offset], path)
        shape = info.shape
    else:
        reader = _info_reader(path)
        _check_components(reader, path)
        shape = tuple(int(s) for s in reversed(reader.GetSize()))
        info = _info_from_reader(reader, shape, path)
    _check_ndim(shape, ndim, path)
    return info


def _header_probe(path: Path) -> tuple[bytes, NiftiHeader]:
    """The decoded start of a ``.nii``/``.nii.gz`` (header and extensions) and its checked header."""
    with open(path, "rb") as handle:
        raw = handle.read(_HEADER_PROBE_BYTES)
    data = raw
    if raw[:2] == GZIP_MAGIC:
        try:
            data = zlib.decompressobj(wbits=31).decompress(raw, _HEADER_PROBE_BYTES)
        except zlib.error as err:
            raise ValueError(f"{path}: corrupt gzip data ({err}); expected an intact .nii.gz") from err
    header = _supported_header(data, path)
    header.dtype(path)
    check_voxel_sizes(header, path)
    if len(data) < header.vox_offset:
        raise ValueError(f"{path}: truncated file: it ends inside the header (vox_offset {header.vox_offset})")
    return data, header


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        kind = path_kind(path)
        if kind == "missing":
            raise FileNotFoundError(f"volume file not found: {path}")
        raise ValueError(f"{path} is {kind}, not a regular file; expected a volume file")
    if path.stat().st_size == 0:
        raise ValueError(f"volume file is empty (0 bytes): {path}")
    return path


def _check_ndim(shape: tuple[int, ...], ndim: int | None, path: Path) -> None:
    if ndim is not None and len(shape) != ndim:
        kind = {3: "a 3D volume (Z, H, W)", 4: "a 4D cine volume (T, Z, H, W)"}.get(ndim, f"{ndim}D data")
        raise ValueError(f"{path}: expected {kind}, got an array of shape {tuple(shape)} ({len(shape)}D)")


def _read_nifti(path: Path) -> tuple[np.ndarray, VolumeInfo]:
    """Decode a ``.nii``/``.nii.gz`` from one read of the file (see :func:`read_volume`)."""
    data = decode_nifti_bytes(path.read_bytes(), path)
    header = _supported_header(data, path)
    stored = check_voxel_bytes(header, data, path)
    check_voxel_sizes(header, path)
    info = _sitk_header_info(data[: header.vox_offset], path)
    if int(np.prod(info.shape, dtype=np.int64)) != header.n_voxels:  # a layout ITK interprets differently
        return _read_other(path)
    voxels = np.frombuffer(data, dtype=stored, count=header.n_voxels, offset=header.vox_offset)
    target = np.dtype(info.dtype)
    if header.scaled:  # ITK's rescaling: in double precision, then cast to the type ITK reports
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by _cast
            scaled = voxels.astype(np.float64) * header.slope + header.intercept
        array = _cast(scaled, target, path, f"intensities after the header's scaling (scl_slope {header.slope:g})")
    else:
        array = voxels.astype(target.newbyteorder("="), copy=True)  # native order, writable
    return array.reshape(info.shape), info


def _supported_header(data: bytes, path: Path) -> NiftiHeader:
    header = parse_header(data, path)
    if header.version != 1:
        raise ValueError(f"{path}: a NIfTI-2 file; expected NIfTI-1 (SimpleITK cannot read NIfTI-2: convert it, "
                         "e.g. with nibabel)")
    return header


def _read_other(path: Path) -> tuple[np.ndarray, VolumeInfo]:
    """Any other format (and unusual NIfTI layouts), through SimpleITK."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ValueError(f"cannot read volume {path}: {_itk_message(err)}") from err
    _check_components(image, path)
    array = sitk.GetArrayFromImage(image)
    return array, _info_from_reader(image, array.shape, path)


def _itk_message(err: Exception) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


@dataclass(frozen=True)
class _HeaderInfo(VolumeInfo):
    dtype: str = "float32"  # the pixel type ITK would return (after its intensity scaling)


def _info_reader(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"cannot read volume {path}: {_itk_message(err)}") from err
    return reader


def _check_components(image: sitk.ImageFileReader | sitk.Image, path: Path) -> None:
    n = image.GetNumberOfComponentsPerPixel() if isinstance(image, sitk.Image) else image.GetNumberOfComponents()
    pixel = sitk.GetPixelIDValueAsString(image.GetPixelID())
    if "complex" in pixel:
        raise ValueError(f"{path}: complex-valued voxels ({pixel}); expected real intensities or labels")
    if n > 1:
        kind = "an RGB colour image" if n in (3, 4) else "a vector image"
        raise ValueError(f"{path}: {kind} ({n} components per voxel, {pixel}); expected a grayscale volume")


def _info_from_reader(image: sitk.ImageFileReader | sitk.Image, shape: tuple[int, ...], path: Path) -> VolumeInfo:
    spacing = tuple(float(s) for s in image.GetSpacing())
    for axis, size in zip("xyz", spacing[:3]):
        if not np.isfinite(size) or size <= 0:
            raise ValueError(f"{path}: voxel size along {axis} is {size}; expected a positive size in mm")
    return VolumeInfo(
        shape=tuple(int(s) for s in shape),
        spacing=spacing,
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
        path=path,
    )


_SITK_DTYPES = {
    sitk.sitkUInt8: "uint8", sitk.sitkInt8: "int8", sitk.sitkUInt16: "uint16", sitk.sitkInt16: "int16",
    sitk.sitkUInt32: "uint32", sitk.sitkInt32: "int32", sitk.sitkUInt64: "uint64", sitk.sitkInt64: "int64",
    sitk.sitkFloat32: "float32", sitk.sitkFloat64: "float64",
}


def _sitk_header_info(header_bytes: bytes, path: Path) -> _HeaderInfo:
    """Geometry, shape, pixel type and scaling as ITK reads them from a NIfTI header (header bytes only).

    ITK reads headers only from files, so the header (and its extensions) is written to a small temporary ``.nii``;
    this costs well under a millisecond, far less than decompressing the file a second time. ITK's warnings about
    that file (e.g. "unexpected scales in sform") would name the temporary file, so they are not printed: what they
    warn about is checked by :func:`check_header_geometry`, whose error names ``path``.
    """
    fd, name = tempfile.mkstemp(prefix="medseg-hdr-", suffix=".nii")
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(header_bytes)
        reader = sitk.ImageFileReader()
        reader.SetImageIO("NiftiImageIO")
        reader.SetFileName(name)
        sitk.ProcessObject.SetGlobalWarningDisplay(False)
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:
            message = _itk_message(err).replace(name, "the header")
            raise ValueError(f"{path}: ITK cannot read the NIfTI header ({message})") from err
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    _check_components(reader, path)
    shape = tuple(int(s) for s in reversed(reader.GetSize()))
    base = _info_from_reader(reader, shape, path)
    check_header_geometry(parse_geometry(header_bytes, path), base)
    pixel = reader.GetPixelID()
    if pixel not in _SITK_DTYPES:
        raise ValueError(f"{path}: unsupported voxel type {sitk.GetPixelIDValueAsString(pixel)}")
    return _HeaderInfo(base.shape, base.spacing, base.origin, base.direction, path, _SITK_DTYPES[pixel])


#: Two readings of one header agree when they place the voxels at most this many mm apart, or at most
#: :data:`HEADER_GEOMETRY_TOLERANCE_VOXELS` of the smallest voxel size if that is more. The float32 header fields
#: round a well-conditioned geometry by about 1e-4 mm over 500 mm, but a qform rotation near 180 degrees (quaternion
#: ``a`` near 0) loses up to a few hundredths of a mm over a field of view; a twentieth of a voxel moves no voxel
#: centre noticeably for any resampling, while forms that really disagree are a voxel or more apart.
HEADER_GEOMETRY_TOLERANCE_MM = 1e-2
HEADER_GEOMETRY_TOLERANCE_VOXELS = 0.05
#: A grid wider than this (mm) along any axis is no scan: its header's units or dims are wrong.
MAX_GRID_EXTENT_MM = 10_000.0

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _itk_affine_ras(info: VolumeInfo) -> np.ndarray:
    """4×4 voxel (i, j, k) → RAS mm matrix of ITK's spatial geometry (ITK works in LPS)."""
    n = len(info.spacing)
    direction = np.asarray(info.direction, dtype=np.float64).reshape(n, n)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(info.spacing[:3])
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(info.origin[:3], dtype=np.float64)
    return affine


def _largest_shift(a: np.ndarray, b: np.ndarray, size_xyz: tuple[int, ...]) -> float:
    """Largest distance (mm) between where ``a`` and ``b`` put a corner of the grid (a last index at least 1, so
    that every column of the matrices counts even for a single slice)."""
    axes = [(0.0, float(max(n - 1, 1))) for n in size_xyz]
    corners = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])  # (4, 8)
    return float(np.max(np.linalg.norm((a @ corners - b @ corners)[:3], axis=0)))


def _is_sheared(affine: np.ndarray) -> bool:
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return bool(np.max(np.abs(columns.T @ columns - np.eye(3))) > 1e-4)


def check_header_geometry(geometry: NiftiGeometry, info: VolumeInfo) -> None:
    """The voxel grid ITK reads from a NIfTI header must be the one its qform and sform describe.

    nibabel and FSL use the sform when ``sform_code > 0`` (else the qform); ITK prefers the sform only when it is a
    rotation with the ``pixdim`` voxel sizes, and otherwise mixes in the qform or ``pixdim``. Where the forms (or ITK's
    reading of them) disagree by more than a twentieth of a voxel (at least
    :data:`HEADER_GEOMETRY_TOLERANCE_MM`), the spacing the model is given and the
    place a viewer shows the voxels depend on the tool, so the header is refused. A header without any form
    (both codes 0) has no world geometry to disagree with and is accepted: every tool falls back to ``pixdim``.

    Args:
        geometry: the header's geometry fields (:func:`~medseg.io.nifti_format.parse_geometry`).
        info: what ITK read from the same header.

    Raises:
        ValueError: naming the file, the disagreement in mm and what to do.
    """
    if len(info.spacing) < 3:  # 2D: ITK drops the third axis; nothing medseg segments
        return
    size_xyz = tuple(reversed(info.shape))[:3]
    unit = geometry.unit_mm
    _check_grid_extent(geometry, size_xyz, info.path)
    voxel_mm = min(abs(float(v)) * unit for v in geometry.pixdim[1:4])
    tolerance = max(HEADER_GEOMETRY_TOLERANCE_MM, HEADER_GEOMETRY_TOLERANCE_VOXELS * voxel_mm)
    forms = {}
    for name, code, affine in (("sform", geometry.sform_code, geometry.sform_affine),
                               ("qform", geometry.qform_code, geometry.qform_affine)):
        if code > 0:
            scaled = affine()
            scaled[:3, :] *= unit
            forms[name] = scaled
    fix = "fix the header so that both give the same grid, e.g. with fslorient -copysform2qform or -copyqform2sform"
    if len(forms) == 2:
        shift = _largest_shift(forms["sform"], forms["qform"], size_xyz)
        if shift > tolerance:
            sheared = " (its sform is sheared, which ITK cannot represent)" if _is_sheared(forms["sform"]) else ""
            raise ValueError(
                f"{info.path}: the qform and the sform of the header place the voxels up to {shift:.3g} mm apart"
                f"{sheared}; expected one geometry, since tools choose different forms ({fix})"
            )
    itk = _itk_affine_ras(info)
    for name, affine in forms.items():
        shift = _largest_shift(itk, affine, size_xyz)
        if shift > tolerance:
            sizes = tuple(round(float(v), 5) for v in np.linalg.norm(affine[:3, :3], axis=0))
            pixdim = tuple(round(float(v) * unit, 5) for v in geometry.pixdim[1:4])
            if not np.allclose(sizes, pixdim, rtol=0, atol=1e-4):  # ITK then takes pixdim as the spacing
                raise ValueError(
                    f"{info.path}: the {name}'s voxel sizes {sizes} mm differ from pixdim {pixdim} mm, so ITK reads a "
                    f"grid up to {shift:.3g} mm away from the {name} that other tools use; expected pixdim to equal "
                    f"the {name}'s voxel sizes (fix the header, e.g. with nibabel's header.set_zooms)"
                )
            raise ValueError(
                f"{info.path}: ITK reads a voxel grid up to {shift:.3g} mm away from the header's {name}; expected a "
                f"{name} that ITK can read as it is (an orthogonal matrix with the pixdim voxel sizes)"
            )


def _check_grid_extent(geometry: NiftiGeometry, size_xyz: tuple[int, ...], path: Path | None) -> None:
    """A header whose grid spans more than :data:`MAX_GRID_EXTENT_MM` describes no scan: say what makes it so (the
    units, e.g. mm values under a metre unit, or the dims) instead of the geometry disagreements it causes.

    Raises:
        ValueError: naming the file, the dims, the voxel sizes with their unit and the extent.
    """
    unit = geometry.unit_mm
    sizes = [abs(float(v)) for v in geometry.pixdim[1:4]]
    extent = max(n * size * unit for n, size in zip(size_xyz, sizes))
    if extent <= MAX_GRID_EXTENT_MM:
        return
    dims = "x".join(str(n) for n in size_xyz)
    shown = ", ".join(f"{size:g}" for size in sizes)
    if geometry.unit_name == "m" and max(sizes) * unit > 100.0:
        why = (f"the header's spatial unit is metres, so its voxel sizes ({shown}) are {max(sizes) * unit:g} mm and "
               "more; expected sizes in the header's unit (probably mm values under a metre unit: set xyzt_units to "
               "mm, e.g. with nibabel's header.set_xyzt_units('mm'))")
    else:
        why = f"expected a scan at most {MAX_GRID_EXTENT_MM / 1000:g} m across (check the header's dims and pixdim)"
    raise ValueError(f"{path}: the header describes {dims} voxels of {shown} {geometry.unit_name}, a grid "
                     f"{extent / 1000:.3g} m across; {why}")


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

    When ``reference`` was read from a NIfTI file and ``array`` lies on that file's voxel grid (same spatial shape,
    and the geometry is the one ITK read from it, e.g. a label map predicted for that scan or one frame of a 4D scan),
    the file's qform/sform codes and parameters, qfac, voxel sizes and units are copied unchanged into the new header,
    so that nibabel, FSL, ITK-SNAP and every other tool place the output exactly where they place the reference (ITK
    would write its own, LPS-derived forms and mm units). Any other volume is written by SimpleITK from its geometry.

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
    path = Path(path)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    source = None
    if reference is not None and is_nifti_name(path) and array.dtype.name in NIFTI_CODES:
        source = _source_geometry(reference.path, array.shape, geometry)
    if source is not None:
        data = nifti1_header(source, array.shape, array.dtype) + np.ascontiguousarray(
            array, dtype=array.dtype.newbyteorder("<")).tobytes()
        if path.name.endswith(".gz"):
            data = gzip.compress(data, compresslevel=6, mtime=0)
        with atomic_output_path(path) as tmp:
            tmp.write_bytes(data)
            _verify_written(tmp, path, array)
        return path
    image = to_sitk(Volume(array=array, **geometry))
    with atomic_output_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        _verify_written(tmp, path, array)
    return path


def check_nifti_file(path: PathLike, array: np.ndarray | None = None) -> None:
    """Read a ``.nii``/``.nii.gz`` file back completely and check that it is whole.

    The whole gzip stream is decompressed (its CRC-32 and length trailer are verified), the header is parsed and the
    voxel data the header declares must be present. With ``array``, the header's dims must be its shape and the stored
    voxels its values (as the file's voxel type), so a file that a writer cut short or garbled is caught even when
    the writer did not report it (ITK's "wrote only 0 of N bytes" is a warning, not an error).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"volume file not found: {path}")
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    data = decode_nifti_bytes(raw, path)
    header = parse_header(data, path)
    stored = check_voxel_bytes(header, data, path)
    if array is None:
        return
    shape = tuple(reversed(header.dims))
    if shape != tuple(array.shape):
        raise ValueError(f"{path}: the header declares shape {shape}, the written array has shape {array.shape}")
    voxels = np.frombuffer(data, dtype=stored, count=header.n_voxels, offset=header.vox_offset)
    expected = np.ascontiguousarray(array).astype(stored, copy=False).ravel()
    if voxels.tobytes() != expected.tobytes():
        raise ValueError(f"{path}: the voxels read back differ from the array that was written")


def nifti_file_problem(path: PathLike) -> str | None:
    """Why the NIfTI file ``path`` is not whole (:func:`check_nifti_file`), or None if it is."""
    try:
        check_nifti_file(path)
    except (OSError, ValueError) as err:
        return str(err)
    return None


def _verify_written(tmp: Path, path: Path, array: np.ndarray) -> None:
    """Check the temporary file of a volume write before it is renamed to ``path``.

    Raises:
        OSError: naming ``path``, what was wrong and the free space left (a full disk is the usual cause).
    """
    if not is_nifti_name(path):
        if tmp.stat().st_size == 0:
            raise OSError(f"cannot write {path}: nothing was written (0 bytes){free_space_note(path)}")
        return
    try:
        check_nifti_file(tmp, array)
    except ValueError as err:
        reason = str(err).replace(f"{tmp}: ", "").split("; expected")[0]  # the advice is for readers
        raise OSError(f"cannot write {path}: the file did not read back complete ({reason}){free_space_note(path)}"
                      ) from err


def _source_geometry(
    source: Path | None, shape: tuple[int, ...], geometry: dict[str, tuple[float, ...]]
) -> NiftiGeometry | None:
    """The header geometry of the NIfTI file ``source`` if an array of ``shape`` with ``geometry`` (ITK) lies on its
    voxel grid; None otherwise (no such file, another grid, or a file that no longer reads)."""
    if source is None or not is_nifti_name(source) or not source.is_file():
        return None
    try:
        data, header = _header_probe(source)
        if header.version != 1:
            return None
        info = _sitk_header_info(data[: header.vox_offset], source)
        header_geometry = parse_geometry(data, source)
    except (OSError, ValueError):
        return None
    n = len(info.spacing)
    if info.shape == tuple(shape):
        expected = {"spacing": info.spacing, "origin": info.origin, "direction": info.direction}
    elif n == 4 and len(shape) == 3 and info.shape[1:] == tuple(shape):  # one frame of a 4D scan
        block = np.asarray(info.direction, dtype=np.float64).reshape(4, 4)[:3, :3]
        expected = {"spacing": info.spacing[:3], "origin": info.origin[:3], "direction": tuple(block.ravel().tolist())}
    else:
        return None
    same = all(tuple(float(v) for v in geometry[key]) == tuple(expected[key]) for key in expected)
    return header_geometry if same else None


def read_image_label_pair(image_path: PathLike, label_path: PathLike, ndim: int | None = 3) -> tuple[Volume, Volume]:
    """Read an image and its label map and check that they share one voxel grid (:func:`check_same_grid`).

    Raises:
        ValueError: naming the label file if its shape, spacing, origin or direction differs from the image's.
    """
    image = read_volume(image_path, ndim=ndim, dtype=np.float32)
    label = read_volume(label_path, ndim=ndim)
    check_same_grid(image, label)
    return image, label


#: Geometry tolerances of :func:`check_same_grid` (mm for spacing and origin, unitless for direction cosines).
GRID_TOLERANCE = {"spacing": 1e-3, "origin": 1e-2, "direction": 1e-4}


def check_same_grid(image: Volume, label: Volume) -> None:
    """An image and its label map must share one voxel grid: same shape, spacing, origin and direction.

    Raises:
        ValueError: naming the label file, the property, the label's and the image's value.
    """
    if label.array.shape != image.array.shape:
        raise ValueError(
            f"label {label.name} has shape {label.array.shape} but its image {image.name} has shape "
            f"{image.array.shape}; expected identical voxel grids"
        )
    for key, tolerance in GRID_TOLERANCE.items():
        mine, theirs = np.asarray(getattr(label, key)), np.asarray(getattr(image, key))
        if mine.shape != theirs.shape or not np.allclose(mine, theirs, rtol=0, atol=tolerance):
            raise ValueError(
                f"label {label.name} has {key} {tuple(round(float(v), 5) for v in mine)} but its image {image.name} "
                f"has {tuple(round(float(v), 5) for v in theirs)}; expected identical voxel grids (fix the label "
                "header)"
            )


def check_label_values(label: Volume, allowed: set[int] | frozenset[int]) -> None:
    """Raise ``ValueError`` naming the file if the label map holds values outside ``allowed``."""
    values = np.unique(label.array)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f"{label.name}: label map holds non-integer values; expected integers in {sorted(allowed)}")
    unexpected = sorted(set(int(v) for v in values) - set(allowed))
    if unexpected:
        raise ValueError(f"{label.name}: unexpected label values {unexpected}; expected only {sorted(allowed)}")
