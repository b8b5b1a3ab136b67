"""Render settings for fast CPU rendering, and the one place robosuite is imported.

On a CPU (Mesa llvmpipe through EGL) a robosuite frame is dominated by the high-poly visual meshes of
the robot and its mount (~180k triangles), the 4x multisampled 640x480 offscreen buffer and the
reflective floor (measured, docs/benchmarks.md "Simulation: env and collection throughput").
``RenderSettings(quality="fast")`` therefore

- replaces every visual-only mesh (robot, gripper, mount, objects) by a decimated copy
  (fast-simplification, made at first use and cached under ``~/.cache/mtil/meshes``),
- turns multisampling off and shrinks the offscreen buffer to the camera size,
- turns shadows and reflections off (the floor plane is reflective: MuJoCo renders the whole scene a
  second time, mirrored; measured 2x on the render time).

All of it is done by rewriting the MJCF string before MuJoCo compiles it (``process_xml``), so the
settings travel with ``env_args["render"]`` and evaluation rebuilds exactly the renderer the data saw.
``quality="default"`` leaves robosuite's XML untouched.

Importing this module sets ``MUJOCO_GL=egl`` when no display exists and it is unset (headless CPU
rendering works with EGL; osmesa and glfw do not here), before MuJoCo or robosuite are imported.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

import numpy as np

from mtil.datasets.atomic import atomic_path
from mtil.datasets.cache import cache_root

if os.environ.get("DISPLAY") is None:
    os.environ.setdefault("MUJOCO_GL", "egl")

CACHE_DIR = str(cache_root() / "meshes")


def import_robosuite():
    """Import robosuite with its import-time banner (macro file, optional robots) silenced."""
    from mtil.pipeline.sim.pool import quiet_robosuite

    quiet_robosuite()
    import robosuite

    return robosuite


@dataclass(frozen=True)
class RenderSettings:
    """How frames are rendered; stored in ``env_args["render"]``."""

    quality: str = "fast"  # "fast" (settings below) or "default" (robosuite's XML untouched)
    shadows: bool = False  # cast shadows (fast mode only; default mode keeps robosuite's)
    reflections: bool = False  # reflective materials (the floor plane): each re-renders the scene mirrored
    msaa_samples: int = 0  # multisampling of the offscreen buffer (robosuite's default is 4)
    mesh_keep: float = 0.1  # fraction of triangles kept in visual-only meshes
    min_faces: int = 200  # meshes with fewer triangles are left alone

    def __post_init__(self):
        if self.quality not in ("fast", "default"):
            raise ValueError(f"render quality must be 'fast' or 'default', got {self.quality!r}")
        if not 0.0 < self.mesh_keep <= 1.0:
            raise ValueError(f"mesh_keep must be in (0, 1], got {self.mesh_keep}")

    def to_dict(self) -> dict:
        return asdict(self) if self.quality == "fast" else {"quality": "default"}  # the rest is unused

    @classmethod
    def from_dict(cls, d: dict | None) -> RenderSettings:
        if not d:
            return cls(quality="default")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------- mesh decimation (cached)


def _read_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float32 and triangles (F, 3) int of an .obj or binary .stl file."""
    if path.lower().endswith(".stl"):
        with open(path, "rb") as f:
            data = f.read()
        n = int(np.frombuffer(data, np.uint32, 1, 80)[0])
        rec = np.frombuffer(data, np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), n, 84)
        tri_v = rec["v"].reshape(-1, 3)
        verts, inverse = np.unique(tri_v, axis=0, return_inverse=True)  # STL repeats vertices per triangle
        return verts.astype(np.float32), inverse.reshape(-1, 3)
    verts, faces = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))  # fan
    v = np.asarray(verts, np.float32)
    # obj files repeat positions per corner; merge them so the simplifier sees a connected surface
    v, inverse = np.unique(v, axis=0, return_inverse=True)
    return v, inverse.reshape(-1)[np.asarray(faces, np.int64)].reshape(-1, 3)


def decimated_mesh(path: str, keep: float, min_faces: int) -> str:
    """Path of a cached copy of ``path`` with about ``keep`` of its triangles (the original if small)."""
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{keep}|{min_faces}|v1".encode()).hexdigest()[:16]
    out = os.path.join(CACHE_DIR, f"{os.path.splitext(os.path.basename(path))[0]}-{key}.obj")
    if os.path.exists(out):
        return out
    verts, faces = _read_mesh(path)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    if len(faces) < min_faces or keep >= 1.0:
        return path
    import fast_simplification

    v2, f2 = fast_simplification.simplify(verts, faces.astype(np.int32), target_reduction=1.0 - keep)
    if len(f2) < 4:  # degenerate result: keep the original rather than a broken mesh
        return path
    os.makedirs(CACHE_DIR, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "w") as f:  # atomic: parallel workers may race to make the same file
        f.write("".join(f"v {a:.6f} {b:.6f} {c:.6f}\n" for a, b, c in v2))
        f.write("".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f2))
    return out


# ---------------------------------------------------------------- MJCF rewriting


def _visual_only_meshes(root: ET.Element) -> set[str]:
    """Names of meshes used only by geoms that never collide (contype=conaffinity=0)."""
    used, colliding = set(), set()
    for g in root.iter("geom"):
        name = g.get("mesh")
        if name is None:
            continue
        used.add(name)
        if not (g.get("contype") == "0" and g.get("conaffinity") == "0"):
            colliding.add(name)
    return used - colliding


def process_xml(xml: str, settings: RenderSettings, image_size: int | None = None) -> str:
    """Apply ``settings`` to an MJCF string (identity for quality='default')."""
    if settings.quality != "fast":
        return xml
    root = ET.fromstring(xml)
    visual_only = _visual_only_meshes(root)
    asset = root.find("asset")
    for mesh in asset.iter("mesh") if asset is not None else []:
        path = mesh.get("file")
        if mesh.get("name") in visual_only and path and os.path.exists(path):
            new = decimated_mesh(path, settings.mesh_keep, settings.min_faces)
            if new != path:
                mesh.set("file", new)
                # a decimated sliver can have ~0 volume; visual geoms carry no mass (bodies declare
                # <inertial>), so the shell rule only keeps the compiler from rejecting it
                mesh.set("inertia", "shell")
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    quality = visual.find("quality")
    if quality is None:
        quality = ET.SubElement(visual, "quality")
    quality.set("offsamples", str(int(settings.msaa_samples)))
    if not settings.shadows:
        quality.set("shadowsize", "0")
        for light in root.iter("light"):
            light.set("castshadow", "false")
    if not settings.reflections:
        for mat in root.iter("material"):
            if mat.get("reflectance") is not None:
                mat.set("reflectance", "0")
    if image_size:
        glob = visual.find("global")
        if glob is None:
            glob = ET.SubElement(visual, "global")
        glob.set("offwidth", str(int(image_size)))
        glob.set("offheight", str(int(image_size)))
    return ET.tostring(root, encoding="unicode")


class FastRenderMixin:
    """Mix into a robosuite env class: every MJCF it compiles goes through ``process_xml``.

    ``raw_xml`` keeps the unprocessed model (stored as a demo's ``model_file``: portable, since the
    decimated meshes live in a per-machine cache and are re-made from it on replay).
    """

    def __init__(self, *args, mtil_render: dict | None = None, mtil_image_size: int | None = None, **kwargs):
        self._mtil_render = RenderSettings.from_dict(mtil_render)
        self._mtil_image_size = mtil_image_size
        self.raw_xml = None
        super().__init__(*args, **kwargs)

    def _initialize_sim(self, xml_string=None):
        xml = xml_string if xml_string else self.model.get_xml()
        self.raw_xml = xml
        super()._initialize_sim(process_xml(xml, self._mtil_render, self._mtil_image_size))
