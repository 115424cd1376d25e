"""A sample folder of "your own photos" made from the course's CIFAR-10 copy, so notebook 07 runs offline.

Real photo folders are messy: mixed sizes, formats and modes, phone pictures stored sideways with an
EXIF orientation tag, stray non-image files. The sample folder has all of these, on purpose.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import load_cifar_split
from .settings import sample_photos_dir

__all__ = ["make_sample_folder"]

EXIF_ORIENTATION = 0x0112  # the EXIF tag; value 6: "rotate 90 degrees clockwise to display"


def make_sample_folder(
    dest: str | os.PathLike | None = None,
    classes: Sequence[str] = ("automobile", "truck"),
    n_per_class: int = 300,
    seed: int = 0,
) -> Path:
    """Write ``dest/<class>/*`` (default ``<cache>/sample-photos``) from CIFAR-10 *test* images of ``classes``.

    Each image is upscaled to a random size (longer side 96-640 px, aspect 3:4 to 16:9) and saved as JPEG,
    PNG or WebP; some are greyscale or RGBA, every 7th JPEG is stored rotated with an EXIF orientation tag.
    A hidden folder and a text file are added: loaders must ignore them. An existing ``dest`` is replaced.
    The default classes, automobile and truck, are a look-alike pair that ImageNet knows many kinds of but
    never learned to split this way, like many a learner's own classes (notebook 07 uses them).
    """
    from PIL import Image

    dest = Path(dest).expanduser() if dest is not None else sample_photos_dir()
    if dest.exists():
        shutil.rmtree(dest)
    data = load_cifar_split("test", classes, n=n_per_class * len(classes), seed=seed)
    rng = np.random.default_rng(seed)
    formats = ("jpg", "png", "webp")
    for i, (img, label) in enumerate(zip(data.images, data.labels.tolist())):
        folder = dest / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        long = int(rng.integers(96, 641))
        aspect = float(rng.uniform(3 / 4, 16 / 9))
        w, h = (long, round(long / aspect)) if rng.random() < 0.7 else (round(long / aspect), long)
        im = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((w, h), Image.Resampling.BICUBIC)
        fmt = formats[i % 3]
        if i % 11 == 0:
            im = im.convert("L")
        elif i % 13 == 0 and fmt == "png":
            im = im.convert("RGBA")
        name = folder / f"{data.classes[label]}_{i:04d}.{fmt}"
        if fmt == "jpg" and i % 7 == 0:  # a phone photo: pixels stored sideways, the tag says how to turn them
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = 6
            im.transpose(Image.Transpose.ROTATE_90).save(name, quality=90, exif=exif)
        else:
            im.save(name, **({"quality": 90} if fmt != "png" else {}))
    (dest / ".ipynb_checkpoints").mkdir(exist_ok=True)
    (dest / ".ipynb_checkpoints" / "stray.jpg").write_bytes(b"not an image")
    (dest / "README.txt").write_text("One sub-folder per class; every image file below it belongs to that class.\n")
    (dest / classes[0] / "notes.txt").write_text("not an image: ignored\n")
    return dest
