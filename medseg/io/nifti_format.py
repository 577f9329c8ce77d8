"""Byte-level NIfTI-1/-2 checks: the gzip stream, the header and the amount of voxel data.

SimpleITK does not notice a truncated or bit-flipped ``.nii.gz``: it fills the missing voxels with zeros or decodes
garbage. :func:`decode_nifti_bytes` therefore decompresses the whole file once with :mod:`zlib`, which verifies the
gzip CRC-32 and length trailer, and :func:`parse_header` / :func:`check_voxel_bytes` compare the decoded size with what
the header declares (``dim`` × ``bitpix`` after ``vox_offset``). The decoded bytes are then handed to the parser, so
the file is read and decompressed only once (see :func:`medseg.io.nifti.read_volume`).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: NIfTI ``datatype`` codes of real scalar voxels → numpy kind (byte order is added from the header).
SCALAR_TYPES: dict[int, str] = {
    2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8",
}
COMPLEX_TYPES = {32: "complex64", 1792: "complex128", 2048: "complex256"}
RGB_TYPES = {128: "RGB (3 x 8 bit)", 2304: "RGBA (4 x 8 bit)"}


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI header that the reader needs.

    Attributes:
        version: 1 or 2.
        byteorder: ``'<'`` or ``'>'``.
        dims: voxel counts in file order ``(x, y, z[, t, ...])`` (``dim[1..dim[0]]``).
        datatype: NIfTI type code.
        bitpix: bits per voxel as declared.
        pixdim: voxel sizes in file order (``pixdim[1..dim[0]]``).
        vox_offset: byte offset of the first voxel.
        header_size: 348 (NIfTI-1) or 540 (NIfTI-2).
        slope, intercept: intensity scaling as ITK applies it (non-finite values mean unset, slope 0 means 1).
    """

    version: int
    byteorder: str
    dims: tuple[int, ...]
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]
    vox_offset: int
    header_size: int
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def scaled(self) -> bool:
        return self.slope != 1.0 or self.intercept != 0.0

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64))

    def dtype(self, path: Path | str) -> np.dtype:
        """Numpy dtype of the stored voxels.

        Raises:
            ValueError: naming the file for complex, RGB or unknown voxel types.
        """
        if self.datatype in COMPLEX_TYPES:
            raise ValueError(f"{path}: complex-valued voxels ({COMPLEX_TYPES[self.datatype]}); expected real "
                             "intensities or labels (save the magnitude image)")
        if self.datatype in RGB_TYPES:
            raise ValueError(f"{path}: an {RGB_TYPES[self.datatype]} colour image; expected a grayscale volume")
        if self.datatype not in SCALAR_TYPES:
            raise ValueError(f"{path}: unsupported NIfTI datatype code {self.datatype}; expected a real scalar type "
                             f"(codes {sorted(SCALAR_TYPES)})")
        dtype = np.dtype(self.byteorder + SCALAR_TYPES[self.datatype])
        if self.bitpix != dtype.itemsize * 8:
            raise ValueError(f"{path}: inconsistent header: datatype {dtype.name} has {dtype.itemsize * 8} bits per "
                             f"voxel, bitpix says {self.bitpix}")
        return dtype


def is_nifti_name(path: Path | str) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def decode_nifti_bytes(raw: bytes, path: Path | str) -> bytes:
    """The decompressed content of a ``.nii``/``.nii.gz`` file (``raw`` itself if it is not gzip-compressed).

    Every gzip member is decompressed to its end, which verifies its CRC-32 and length trailer.

    Raises:
        ValueError: naming the file for a truncated or corrupt gzip stream.
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    parts: list[bytes] = []
    rest = raw
    while rest[:2] == GZIP_MAGIC:
        stream = zlib.decompressobj(wbits=31)  # 16 + 15: gzip wrapper, checks CRC-32 and ISIZE
        try:
            parts.append(stream.decompress(rest))
        except zlib.error as err:
            raise ValueError(f"{path}: corrupt gzip data ({err}); expected an intact .nii.gz (the file is damaged: "
                             "copy or regenerate it)") from err
        if not stream.eof:
            raise ValueError(f"{path}: truncated file: the gzip stream ends early ({len(raw)} bytes on disk); expected "
                             "a complete .nii.gz (copy or regenerate it)")
        rest = stream.unused_data
    if rest.strip(b"\x00"):
        raise ValueError(f"{path}: {len(rest)} bytes of unexpected data after the gzip stream; expected a clean "
                         ".nii.gz")
    return b"".join(parts)


def parse_header(data: bytes, path: Path | str) -> NiftiHeader:
    """Parse the NIfTI-1 or NIfTI-2 header at the start of the decoded ``data``.

    Raises:
        ValueError: naming the file if it is not a NIfTI file or the header is inconsistent.
    """
    if len(data) < 348:
        raise ValueError(f"{path}: expected a NIfTI volume, got {len(data)} bytes of data (not a NIfTI file: shorter "
                         "than the 348-byte header)")
    for byteorder in ("<", ">"):
        size = struct.unpack(f"{byteorder}i", data[:4])[0]
        if size == 348 and data[344:347] in (b"n+1", b"ni1"):
            return _parse_v1(data, byteorder, path)
        if size == 540 and data[4:7] in (b"n+2", b"ni2"):
            if len(data) < 540:
                raise ValueError(f"{path}: truncated NIfTI-2 header ({len(data)} of 540 bytes)")
            return _parse_v2(data, byteorder, path)
    raise ValueError(f"{path}: expected a NIfTI volume, got data that is not a NIfTI file (no NIfTI-1/-2 header "
                     "size and magic string)")


def _parse_v1(data: bytes, bo: str, path: Path | str) -> NiftiHeader:
    dim = struct.unpack(f"{bo}8h", data[40:56])
    datatype, bitpix = struct.unpack(f"{bo}2h", data[70:74])
    pixdim = struct.unpack(f"{bo}8f", data[76:108])
    vox_offset, slope, inter = struct.unpack(f"{bo}3f", data[108:120])
    return _finish(1, bo, dim, datatype, bitpix, pixdim, vox_offset, 348, (slope, inter), path)


def _parse_v2(data: bytes, bo: str, path: Path | str) -> NiftiHeader:
    datatype, bitpix = struct.unpack(f"{bo}2h", data[12:16])
    dim = struct.unpack(f"{bo}8q", data[16:80])
    pixdim = struct.unpack(f"{bo}8d", data[104:168])
    vox_offset = struct.unpack(f"{bo}q", data[168:176])[0]
    slope, inter = struct.unpack(f"{bo}2d", data[176:192])
    return _finish(2, bo, dim, datatype, bitpix, pixdim, vox_offset, 540, (slope, inter), path)


def _finish(version: int, bo: str, dim: tuple[int, ...], datatype: int, bitpix: int, pixdim: tuple[float, ...],
            vox_offset: float, header_size: int, scaling: tuple[float, float], path: Path | str) -> NiftiHeader:
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        raise ValueError(f"{path}: header dim[0] = {ndim}; expected 1..7 dimensions")
    dims = tuple(int(d) for d in dim[1: ndim + 1])
    if any(d < 1 for d in dims):
        raise ValueError(f"{path}: header dims {dims}; expected a positive number of voxels along every axis")
    if not math.isfinite(vox_offset) or vox_offset < header_size + 4 or vox_offset != int(vox_offset):
        raise ValueError(f"{path}: header vox_offset = {vox_offset}; expected an integer >= {header_size + 4} "
                         "(single-file NIfTI)")
    slope, inter = scaling
    slope = float(slope) if math.isfinite(slope) and slope != 0 else 1.0
    inter = float(inter) if math.isfinite(inter) else 0.0
    return NiftiHeader(version, bo, dims, int(datatype), int(bitpix), tuple(float(p) for p in pixdim[1: ndim + 1]),
                       int(vox_offset), header_size, slope, inter)


def check_voxel_bytes(header: NiftiHeader, data: bytes, path: Path | str) -> np.dtype:
    """Check that ``data`` holds every voxel the header declares; returns the stored dtype.

    Raises:
        ValueError: naming the file, the expected and the found number of bytes, if the file is truncated.
    """
    dtype = header.dtype(path)
    needed = header.n_voxels * dtype.itemsize
    found = len(data) - header.vox_offset
    if found < needed:
        raise ValueError(
            f"{path}: truncated file: the header declares {'x'.join(map(str, header.dims))} voxels of {dtype.name} "
            f"= {needed} bytes of voxel data, the file holds {max(found, 0)}; expected a complete volume "
            "(copy or regenerate it)"
        )
    return dtype


def check_voxel_sizes(header: NiftiHeader, path: Path | str) -> None:
    """Spatial voxel sizes (``pixdim[1..3]``) must be positive and finite (ITK silently replaces 0 by 1 mm).

    Raises:
        ValueError: naming the file, the axis and the value.
    """
    for axis, size in zip("xyz", header.pixdim[:3]):
        if not math.isfinite(size) or size <= 0:
            raise ValueError(f"{path}: voxel size along {axis} (pixdim) is {size}; expected a positive size in mm")


# ------------------------------------------------------------------------------------------------------ geometry
#: ``xyzt_units & 7`` → millimetres per header unit (0 = unknown: ITK, FSL and nibabel read it as mm).
SPATIAL_UNITS_MM: dict[int, float] = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 0.001}
_SPATIAL_UNIT_NAMES = {0: "unknown (mm)", 1: "m", 2: "mm", 3: "micron"}

#: numpy dtype name → NIfTI ``datatype`` code (little-endian output).
NIFTI_CODES: dict[str, int] = {np.dtype(kind).name: code for code, kind in SCALAR_TYPES.items()}


@dataclass(frozen=True)
class NiftiGeometry:
    """The geometry fields of a NIfTI-1 header, as stored (header units, not yet scaled to mm).

    Attributes:
        qform_code, sform_code: 0 = not set.
        quatern: ``(b, c, d)``; qoffset: ``(x, y, z)``.
        pixdim: ``pixdim[0..7]`` (``pixdim[0]`` is qfac).
        srow: 3×4 rows of the sform.
        xyzt_units: the raw units byte.
    """

    qform_code: int
    sform_code: int
    quatern: tuple[float, float, float]
    qoffset: tuple[float, float, float]
    pixdim: tuple[float, ...]
    srow: tuple[tuple[float, float, float, float], ...]
    xyzt_units: int

    @property
    def unit_mm(self) -> float:
        """Millimetres per spatial header unit (ITK converts m and micron to mm; unknown units count as mm)."""
        return SPATIAL_UNITS_MM.get(self.xyzt_units & 7, 1.0)

    @property
    def unit_name(self) -> str:
        return _SPATIAL_UNIT_NAMES.get(self.xyzt_units & 7, f"code {self.xyzt_units & 7}")

    def qform_affine(self) -> np.ndarray:
        """4×4 voxel → RAS world matrix of the qform, in header units (NIfTI-1 quaternion formula)."""
        b, c, d = self.quatern
        a_squared = 1.0 - (b * b + c * c + d * d)
        if a_squared < 1e-7:  # b, c, d already a unit vector: a 180° rotation (as nifti1_io does)
            norm = math.sqrt(b * b + c * c + d * d)
            a, b, c, d = 0.0, b / norm, c / norm, d / norm
        else:
            a = math.sqrt(a_squared)
        rotation = np.array([
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ])
        qfac = -1.0 if self.pixdim[0] < 0 else 1.0
        affine = np.eye(4)
        affine[:3, :3] = rotation * np.array([self.pixdim[1], self.pixdim[2], qfac * self.pixdim[3]])
        affine[:3, 3] = self.qoffset
        return affine

    def sform_affine(self) -> np.ndarray:
        """4×4 voxel → RAS world matrix of the sform, in header units."""
        affine = np.eye(4)
        affine[:3, :] = np.asarray(self.srow, dtype=np.float64)
        return affine


def parse_geometry(data: bytes, path: Path | str) -> NiftiGeometry:
    """The geometry fields of the NIfTI-1 header at the start of ``data`` (checked with :func:`parse_header`).

    Raises:
        ValueError: naming the file if the header is not NIfTI-1.
    """
    header = parse_header(data, path)
    if header.version != 1:
        raise ValueError(f"{path}: a NIfTI-2 file; expected NIfTI-1")
    bo = header.byteorder
    pixdim = struct.unpack(f"{bo}8f", data[76:108])
    qform_code, sform_code = struct.unpack(f"{bo}2h", data[252:256])
    quatern = struct.unpack(f"{bo}3f", data[256:268])
    qoffset = struct.unpack(f"{bo}3f", data[268:280])
    srow = tuple(struct.unpack(f"{bo}4f", data[280 + 16 * k: 296 + 16 * k]) for k in range(3))
    return NiftiGeometry(int(qform_code), int(sform_code), quatern, qoffset, pixdim, srow, data[123])


def nifti1_header(geometry: NiftiGeometry, shape_zyx: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A little-endian single-file NIfTI-1 header (352 bytes, no extensions) with ``geometry`` copied unchanged.

    Everything that describes the voxel grid in the world (qform/sform codes and parameters, qfac, ``pixdim[1..3]``,
    the units) is taken from ``geometry``; dims, datatype, bitpix, scaling (none) and ``vox_offset`` describe the
    new voxels. The intent, display range, description and slice timing of the source are not carried over.

    Args:
        geometry: the source header's geometry (:func:`parse_geometry`).
        shape_zyx: the array shape in SimpleITK order, ``(Z, H, W)`` or ``(T, Z, H, W)``.
        dtype: voxel type (a key of :data:`NIFTI_CODES`).

    Raises:
        ValueError: for a voxel type NIfTI-1 cannot store.
    """
    dtype = np.dtype(dtype)
    if dtype.name not in NIFTI_CODES:
        raise ValueError(f"NIfTI-1 cannot store {dtype.name} voxels; expected one of {sorted(NIFTI_CODES)}")
    dims = tuple(int(n) for n in reversed(shape_zyx))  # (x, y, z[, t])
    raw = bytearray(352)
    struct.pack_into("<i", raw, 0, 348)
    raw[38:39] = b"r"
    struct.pack_into("<8h", raw, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into("<2h", raw, 70, NIFTI_CODES[dtype.name], dtype.itemsize * 8)
    pixdim = list(geometry.pixdim[: len(dims) + 1]) + [1.0] * (7 - len(dims))
    struct.pack_into("<8f", raw, 76, *pixdim)
    struct.pack_into("<3f", raw, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    raw[123] = geometry.xyzt_units
    struct.pack_into("<2h", raw, 252, geometry.qform_code, geometry.sform_code)
    struct.pack_into("<6f", raw, 256, *geometry.quatern, *geometry.qoffset)
    for k, row in enumerate(geometry.srow):
        struct.pack_into("<4f", raw, 280 + 16 * k, *row)
    raw[344:348] = b"n+1\x00"
    return bytes(raw)
