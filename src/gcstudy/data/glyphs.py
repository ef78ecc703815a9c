"""``glyphs``: a 100-class few-shot transfer set rendered from matplotlib's typefaces.

Every class is one character; every instance is that character in one typeface, under a
seeded random affine distortion and stroke weight, as a 32 x 32 grey uint8 image (white
glyph on black, like MNIST). Nothing is downloaded: the typefaces ship with matplotlib
(``mpl-data/fonts/ttf``: DejaVu Sans / Serif / Sans Mono and STIX General in four styles
each, Computer Modern cmr10, cmb10, cmti10, cmmi10, cmss10, cmtt10; DejaVu and STIX are
free to redistribute, the BaKoMa Computer Modern files too).

Classes (``CLASSES``, 100): Latin digits and letters, Greek, Cyrillic capitals and symbols,
with visually ambiguous groups dropped entirely (o/O/0, l/I/1, c/C, s/S, u/U, v/V, w/W,
x/X, z/Z, k/K, p/P, Greek and Cyrillic letters that look like Latin ones, theta/Theta,
phi/Phi, psi/Psi, ...). The Computer Modern files use TeX encodings, so they render only the
ASCII letters and digits; every other class uses the 16 DejaVu and STIX faces, all of which
have every such character (checked against each face's character map).

Split like CIFAR-FS (Bertinetto et al. 2019): 64 source, 16 val and 20 target classes
(``gcstudy.study.datasets.GLYPHS_SOURCE`` ...: a seeded permutation of the ids). The
source classes are drawn in the *source faces*; val and target classes only in the
*held-out faces* (DejaVu Sans Mono, STIX italics, cmss10, cmtt10), so that few-shot
transfer meets new characters in typefaces the network never saw. Each class has
``INSTANCES`` = 120 instances, cycling through its faces; within a source class every 6th
instance (positions 5, 11, ...) is ``test``, the rest ``train``.

Rendering (``render``): each (character, face) is drawn once with FreeType (PIL) at 64 px,
cropped to its ink and scaled so that its longer side is 22/32 of the image, centred on a
96 x 96 canvas. Each instance then applies, at 96 px, a random affine map (rotation
+-20 degrees, shear +-0.4, scale 0.75-1.2, aspect 0.8-1.25, shift +-3 px of 32) by
bilinear resampling, a stroke weight (erosion by a 3 x 3 min filter, dilation by a 3 x 3
or 5 x 5 max filter, or none) and an area reduction to 32 x 32, then rounds to uint8. All randomness
comes from ``numpy.random.default_rng([seed, class_id])``: the same seed gives the same
bytes.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gcstudy.data.cache import idx_bytes
from gcstudy.data.labelled import LabelledImages
from gcstudy.study.datasets import GLYPH_FILES as FILES
from gcstudy.study.datasets import GLYPHS_SOURCE as SOURCE
from gcstudy.study.datasets import GLYPHS_TARGET, GLYPHS_VAL
from gcstudy.study.image_folders import split_classes

# fmt: off
DIGITS = "23456789"
LATIN_UPPER = "ABDEFGHJLMNQRTY"
LATIN_LOWER = "abdefghijmnqrty"
GREEK = "αβγδεζλμξπστωΓΔΘΛΞΠΣΦΨΩ"
CYRILLIC = "БДЖИЦЧШЩЪЫЭЮЯЉЊ"
SYMBOLS = "&@#$%?!Æ§¶£€©®¿ØŒ±×÷¢¤†‡"
# fmt: on
CLASSES: tuple[str, ...] = tuple(DIGITS + LATIN_UPPER + LATIN_LOWER + GREEK + CYRILLIC + SYMBOLS)
ASCII_CLASSES = frozenset(DIGITS + LATIN_UPPER + LATIN_LOWER)

# (file in mpl-data/fonts/ttf, renders only ASCII letters and digits, held out)
FACES: tuple[tuple[str, bool, bool], ...] = (
    ("DejaVuSans.ttf", False, False),
    ("DejaVuSans-Bold.ttf", False, False),
    ("DejaVuSans-Oblique.ttf", False, False),
    ("DejaVuSans-BoldOblique.ttf", False, False),
    ("DejaVuSerif.ttf", False, False),
    ("DejaVuSerif-Bold.ttf", False, False),
    ("DejaVuSerif-Italic.ttf", False, False),
    ("DejaVuSerif-BoldItalic.ttf", False, False),
    ("STIXGeneral.ttf", False, False),
    ("STIXGeneralBol.ttf", False, False),
    ("cmr10.ttf", True, False),
    ("cmb10.ttf", True, False),
    ("cmti10.ttf", True, False),
    ("cmmi10.ttf", True, False),
    ("DejaVuSansMono.ttf", False, True),
    ("DejaVuSansMono-Bold.ttf", False, True),
    ("DejaVuSansMono-Oblique.ttf", False, True),
    ("DejaVuSansMono-BoldOblique.ttf", False, True),
    ("STIXGeneralItalic.ttf", False, True),
    ("STIXGeneralBolIta.ttf", False, True),
    ("cmss10.ttf", True, True),
    ("cmtt10.ttf", True, True),
)
FACE_NAMES: tuple[str, ...] = tuple(name.removesuffix(".ttf") for name, _, _ in FACES)

SPLIT_SEED = 0  # of the class split (the lists in gcstudy.study.datasets)
INSTANCES = 120
TEST_EVERY = 6  # every 6th instance of a source class is a test instance
SIZE, CANVAS, DRAW = 32, 96, 64  # output, working canvas and FreeType drawing sizes (px)
GLYPH_SPAN = 22 / 32  # longer side of the undistorted glyph, as a fraction of the image
DISTORTION = {"rotation_deg": 20.0, "shear": 0.4, "scale": (0.75, 1.2),
              "aspect": (0.8, 1.25), "shift_px": 3.0}  # fmt: skip
STROKES = (-3, 0, 3, 5)  # min (erosion, < 0) or max (dilation, > 0) filter size at 96 px
SEED = 0
RECIPE = {"classes": "".join(CLASSES), "faces": list(FACE_NAMES), "instances": INSTANCES,
          "size": SIZE, "canvas": CANVAS, "draw": DRAW, "span": GLYPH_SPAN,
          "distortion": DISTORTION, "strokes": list(STROKES), "seed": SEED,
          "split_seed": SPLIT_SEED, "version": 2}  # fmt: skip


def class_split(seed: int = SPLIT_SEED) -> tuple[tuple[int, ...], ...]:
    """(source, val, target) class ids: a seeded permutation of the 100 ids cut 64/16/20,
    each part sorted (written out in gcstudy.study.datasets as GLYPHS_SOURCE, ...)."""
    return split_classes(len(CLASSES), (64, 16, 20), seed)


def font_folder() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def faces_of(class_id: int) -> list[int]:
    """Face ids an instance of the class may use: held-out faces for val and target
    classes, source faces otherwise; ASCII-only faces only for ASCII letters and digits."""
    held_out = class_id not in SOURCE
    ascii_class = CLASSES[class_id] in ASCII_CLASSES
    return [
        face
        for face, (_, ascii_only, is_held_out) in enumerate(FACES)
        if is_held_out == held_out and (ascii_class or not ascii_only)
    ]


@cache
def _font(face: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_folder() / FACES[face][0]), size=DRAW)


def prototype(character: str, face: int) -> torch.Tensor:
    """The undistorted glyph: float32 CANVAS x CANVAS in [0, 1], ink cropped, longer side
    scaled to ``GLYPH_SPAN`` of the image, centred."""
    from PIL import Image, ImageDraw

    font = _font(face)
    image = Image.new("L", (3 * DRAW, 3 * DRAW), 0)
    ImageDraw.Draw(image).text((DRAW, DRAW), character, fill=255, font=font)
    box = image.getbbox()
    if box is None:
        raise ValueError(f"face {FACE_NAMES[face]} draws nothing for {character!r}")
    ink = torch.from_numpy(np.asarray(image.crop(box), dtype=np.float32) / 255)
    height, width = ink.shape
    span = GLYPH_SPAN * CANVAS
    scale = span / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    ink = F.interpolate(ink[None, None], size=size, mode="area" if scale < 1 else "bilinear")
    canvas = torch.zeros(CANVAS, CANVAS)
    top, left = (CANVAS - size[0]) // 2, (CANVAS - size[1]) // 2
    canvas[top : top + size[0], left : left + size[1]] = ink[0, 0].clamp(0, 1)
    return canvas


def affine_matrices(rng: np.random.Generator, n: int) -> torch.Tensor:
    """n random 2 x 3 maps from output to input coordinates (``affine_grid`` convention,
    coordinates in [-1, 1]): rotation, shear, scale and aspect, shift."""
    d = DISTORTION
    angle = np.deg2rad(rng.uniform(-d["rotation_deg"], d["rotation_deg"], n))
    shear = rng.uniform(-d["shear"], d["shear"], n)
    scale = rng.uniform(*d["scale"], n)
    aspect = rng.uniform(*d["aspect"], n)
    shift = rng.uniform(-d["shift_px"], d["shift_px"], (n, 2)) * 2 / SIZE
    matrices = np.zeros((n, 2, 3))
    for i in range(n):
        rotation = np.array(
            [[math.cos(angle[i]), -math.sin(angle[i])], [math.sin(angle[i]), math.cos(angle[i])]]
        )
        forward = rotation @ np.array([[1.0, shear[i]], [0.0, 1.0]])
        forward = forward @ np.diag([scale[i] * aspect[i], scale[i] / aspect[i]])
        inverse = np.linalg.inv(forward)  # affine_grid maps output pixels to input pixels
        matrices[i, :, :2] = inverse
        matrices[i, :, 2] = -inverse @ shift[i]
    return torch.from_numpy(matrices).float()


def stroke(images: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Per image, a max (dilation, size > 0) or min (erosion, size < 0) filter of that size."""
    out = images.clone()
    for size in sizes.unique().tolist():
        if size == 0:
            continue
        chosen = sizes == size
        k = abs(size)
        x = images[chosen] if size > 0 else -images[chosen]
        x = F.max_pool2d(x, k, stride=1, padding=k // 2)
        out[chosen] = x if size > 0 else -x
    return out


def render(class_id: int, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``INSTANCES`` instances of one class: (uint8 INSTANCES x 32 x 32, face ids).
    Their randomness is ``numpy.random.default_rng([seed, class_id])``, one stream per
    class."""
    rng = np.random.default_rng([seed, class_id])
    faces = faces_of(class_id)
    slot = torch.arange(INSTANCES) % len(faces)  # instances cycle through the faces
    face_ids = torch.tensor(faces)[slot]
    prototypes = torch.stack([prototype(CLASSES[class_id], face) for face in faces])
    images = prototypes[slot][:, None]
    theta = affine_matrices(rng, INSTANCES)
    strokes = torch.from_numpy(rng.choice(STROKES, INSTANCES))
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", align_corners=False)
    small = F.avg_pool2d(stroke(warped, strokes), CANVAS // SIZE)
    pixels = torch.round(small[:, 0].clamp(0, 1) * 255).to(torch.uint8)
    return pixels, face_ids


def generate(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 N x 32 x 32, labels N, face ids N) of all classes, class by class."""
    images, labels, faces = [], [], []
    for class_id in range(len(CLASSES)):
        pixels, face_ids = render(class_id, seed)
        images.append(pixels.numpy())
        labels.append(np.full(INSTANCES, class_id))
        faces.append(face_ids.numpy())
    return np.concatenate(images), np.concatenate(labels), np.concatenate(faces)


def build() -> tuple[dict[str, bytes], dict]:
    """The cache's files (relative path -> bytes) and the manifest's extra keys."""
    images, labels, faces = generate()
    arrays = (images, labels.astype(np.uint8), faces.astype(np.uint8))
    files = {name: idx_bytes(array) for name, array in zip(FILES, arrays, strict=True)}
    extra = {
        "class_names": list(CLASSES),
        "face_names": list(FACE_NAMES),
        "source": list(SOURCE),
        "val": list(GLYPHS_VAL),
        "target": list(GLYPHS_TARGET),
    }
    return files, extra


def read(folder: Path, split: str) -> LabelledImages:
    """The ``train`` or ``test`` instances of every class from a verified cache folder,
    read with torchvision's idx parsers; images N x 1 x 32 x 32."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images = read_image_file(str(folder / FILES[0]))
    labels = read_label_file(str(folder / FILES[1]))
    position = torch.arange(len(labels)) % INSTANCES  # instances are stored class by class
    test = position % TEST_EVERY == TEST_EVERY - 1
    keep = test if split == "test" else ~test
    return LabelledImages(images[keep][:, None], labels[keep], CLASSES)
