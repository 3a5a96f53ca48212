"""VVC (H.266) intra as an npp_plugin codec: real VVC bitstreams, not a stand-in.

Encoding: the ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel with Fraunhofer's
``libvvenc``, fed through pipes (no temporary files): RGB → 4:2:0 10-bit BT.601 limited
range (libvvenc takes only 10-bit input), one intra frame at a constant QP (``-qpa 0`` turns
off adaptive QP), written as a raw Annex-B ``.266`` stream.

Decoding: FFmpeg's native ``vvc`` decoder in-process through PyAV; if PyAV is missing, the
same decoder through the ffmpeg binary.

``qp`` is VVC's QP, 0..63. libvvenc needs even width and height of at least 32 pixels for
4:2:0 here; smaller or odd images are refused with :class:`InvalidArgumentError`.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np

from npp_plugin import Codec, Param, hookimpl
from npp_plugin.codec import HeaderSize
from npp_plugin.errors import CodecError, CorruptStreamError, InvalidArgumentError

__all__ = ["VvcCodec"]

_PRESETS = ("faster", "fast", "medium", "slow", "slower")
MIN_SIZE = 32


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class VvcCodec(Codec):
    """VVC intra via libvvenc (encode) and FFmpeg's vvc decoder (decode)."""

    name = "vvc"
    description = "VVC intra: libvvenc via imageio-ffmpeg's ffmpeg, decoded by FFmpeg's vvc decoder (PyAV)"
    extensions = (".266", ".vvc")
    mime = "video/vvc"
    qp_range = (0, 63)
    # VVC's quantiser step at a QP equals HEVC's: condition preprocessors as for HEVC (0..51),
    # so a BPG-trained NPP sees VVC QP 37 as BPG QP 37 (QPs above 51 clip to 1.0).
    qp_norm_range = (0, 51)
    max_size = 16384
    params = {
        "preset": Param("faster", choices=_PRESETS, doc="libvvenc preset (faster ≈ 0.1 s, medium ≈ 1 s at 256²)"),
        "threads": Param(1, range=(1, 64), doc="libvvenc threads per image (batches parallelise over images)"),
    }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            exe = _ffmpeg()
        except Exception as exc:
            return f"no ffmpeg binary from imageio-ffmpeg ({exc}); pip install imageio-ffmpeg"
        return None if exe else "imageio-ffmpeg found no ffmpeg binary"

    def version(self) -> str:
        try:
            import av

            dec = f"PyAV {av.__version__}"
        except ImportError:
            dec = "ffmpeg CLI decoder"
        import imageio_ffmpeg

        return f"ffmpeg {imageio_ffmpeg.get_ffmpeg_version()} libvvenc; {dec}"

    def validate_size(self, *, width: int, height: int) -> None:
        super().validate_size(width=width, height=height)
        w, h = width, height
        if h % 2 or w % 2 or h < MIN_SIZE or w < MIN_SIZE:
            msg = f"{self.name}: image {w}x{h} not supported; 4:2:0 VVC here needs even width and height >= {MIN_SIZE}"
            raise InvalidArgumentError(msg, codec=self.name, argument="image", allowed=f"even sizes >= {MIN_SIZE}")

    def _encode(self, rgb: np.ndarray, /, *, qp: int, preset: str, threads: int) -> bytes:
        h, w = rgb.shape[:2]
        cmd = [
            _ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "-",
            "-frames:v", "1", "-c:v", "libvvenc", "-pix_fmt", "yuv420p10le",
            "-qp", str(qp), "-qpa", "0", "-preset", preset, "-threads", str(threads),
            "-f", "vvc", "-",
        ]
        proc = subprocess.run(cmd, input=rgb.tobytes(), capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            msg = f"{self.name}: libvvenc failed (exit {proc.returncode}): {err[0]}"
            raise CodecError(msg, codec=self.name)
        return proc.stdout

    def _decode(self, data: bytes, /, *, high_bit_depth: bool) -> np.ndarray:
        try:
            import av
        except ImportError:
            return self._decode_cli(data, high_bit_depth)
        with av.open(io.BytesIO(data), format="vvc") as container:
            frame = next(container.decode(video=0))
        if high_bit_depth:
            return np.ascontiguousarray(frame.to_ndarray(format="rgb48le"))
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))

    def _decode_cli(self, data: bytes, high_bit_depth: bool) -> np.ndarray:
        # A PPM on stdout carries its own size, so no probe is needed.
        fmt = "rgb48be" if high_bit_depth else "rgb24"
        cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "vvc", "-i", "-",
               "-frames:v", "1", "-pix_fmt", fmt, "-c:v", "ppm", "-f", "image2pipe", "-"]
        proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout.startswith(b"P6"):
            msg = f"{self.name}: ffmpeg vvc decoder failed: {proc.stderr.decode(errors='replace').strip()[-200:]}"
            raise CodecError(msg, codec=self.name)
        magic, w, h, maxval, pixels = proc.stdout.split(maxsplit=4)
        dtype = np.dtype(">u2") if int(maxval) > 255 else np.dtype(np.uint8)
        arr = np.frombuffer(pixels, dtype)[: int(w) * int(h) * 3].reshape(int(h), int(w), 3)
        return np.ascontiguousarray(arr.astype(np.uint16 if dtype.itemsize == 2 else np.uint8))

    @classmethod
    def _check(cls, data: bytes, /) -> bool:
        # Annex-B start code, then a VVC NAL header (forbidden bit 0, layer 0) whose type is an
        # AUD (20), VPS (14), SPS (15), OPI (12) or DCI (13): HEVC streams start 0x40/0x42.
        for sc in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
            if data.startswith(sc) and len(data) >= len(sc) + 2:
                b0, b1 = data[len(sc)], data[len(sc) + 1]
                return b0 & 0xC0 == 0 and (b1 >> 3) in (12, 13, 14, 15, 20) and (b1 & 7) >= 1
        return False

    def _header_size(self, data: bytes, /) -> HeaderSize:
        # The largest picture any SPS of the stream allows: what the decoder may allocate.
        # No data-length bound: VVC codes a planar CU with context-coded bins only, which can
        # cost far less than a bit, so a small file can hold a large flat picture.
        sizes = [_sps_max_size(nal) for nal in _nal_units(data) if nal[1] >> 3 == _SPS]
        if not sizes:
            msg = f"{self.name}: no sequence parameter set (NAL unit type {_SPS}) in {len(data)} bytes"
            raise CorruptStreamError(msg, codec=self.name)
        w, h = max(sizes, key=lambda s: s[0] * s[1])
        return HeaderSize(w, h)

    def info(self, data: bytes, /) -> dict:
        arr = self.decode(data)
        return {"codec": self.name, "width": int(arr.shape[1]), "height": int(arr.shape[0]),
                "bytes": len(data), "chroma": "420", "bit_depth": 10}


_SPS = 15  # VVC NAL unit type of a sequence parameter set


def _nal_units(data: bytes):
    """The NAL units (header included, emulation prevention bytes removed) of an Annex-B stream."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        nal = data[s:end].rstrip(b"\x00")
        if len(nal) >= 2:
            yield nal[:2] + nal[2:].replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """MSB-first reader over an RBSP; reading past the end is a CorruptStreamError."""

    def __init__(self, data: bytes) -> None:
        self.value, self.size, self.pos = int.from_bytes(data, "big"), 8 * len(data), 0

    def u(self, n: int) -> int:
        if self.pos + n > self.size:
            msg = "vvc: sequence parameter set is truncated"
            raise CorruptStreamError(msg, codec="vvc")
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                msg = "vvc: invalid Exp-Golomb code in the sequence parameter set"
                raise CorruptStreamError(msg, codec="vvc")
        return (1 << zeros) - 1 + self.u(zeros)

    def align(self) -> None:
        self.u(-self.pos % 8)


def _sps_max_size(nal: bytes) -> tuple[int, int]:
    """sps_pic_width/height_max_in_luma_samples (H.266 7.3.2.4) of an SPS NAL unit."""
    b = _Bits(nal[2:])
    b.u(4 + 4)  # sps_seq_parameter_set_id, sps_video_parameter_set_id
    sublayers_minus1 = b.u(3)
    b.u(2 + 2)  # sps_chroma_format_idc, sps_log2_ctu_size_minus5
    if b.u(1):  # sps_ptl_dpb_hrd_params_present_flag: profile_tier_level(1, ...), 7.3.3.1
        b.u(7 + 1 + 8 + 1 + 1)  # profile, tier, level, frame-only, multilayer
        if b.u(1):  # gci_present_flag: 71 constraint bits, then a count of more (7.3.3.2)
            b.u(71)
            b.u(b.u(8))
        b.align()
        present = [b.u(1) for _ in range(sublayers_minus1)]
        b.align()
        b.u(8 * sum(present))  # sublayer_level_idc
        b.u(32 * b.u(8))  # ptl_num_sub_profiles, general_sub_profile_idc
    b.u(1)  # sps_gdr_enabled_flag
    if b.u(1):  # sps_ref_pic_resampling_enabled_flag
        b.u(1)
    w, h = b.ue(), b.ue()
    if w == 0 or h == 0:
        msg = f"vvc: sequence parameter set claims a {w}x{h} picture"
        raise CorruptStreamError(msg, codec="vvc")
    return w, h


@hookimpl
def npp_register_codecs(register) -> None:
    register(VvcCodec)
