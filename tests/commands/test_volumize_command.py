"""`voldefense volumize`: the picture of a volume, the bundled sample, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from voldefense.cli import main
from voldefense.commands.volumize import sample_image_path


def run(argv, capsys):
    code = main(["volumize", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sample_demo_writes_a_labelled_png(tmp_path, capsys):
    out = tmp_path / "volume.png"
    code, stdout, err = run(["sample", "--out", str(out)], capsys)
    assert code == 0, err
    assert "64 patches" in stdout
    picture = Image.open(out)
    # 64 tiles of 16x16 upscaled to 96x96 in an 8x8 layout, plus labels: much larger than the image.
    assert picture.size[0] > 8 * 96 and picture.size[1] > 8 * 96
    assert sample_image_path().is_file() and Image.open(sample_image_path()).size == (128, 128)


def test_tiles_are_the_patches_in_rank_order(tmp_path, capsys):
    # A 2x2-patch image whose patches are flat colours of known brightness; mse to patch 0, descending.
    array = np.zeros((8, 8), dtype=np.uint8)
    array[:4, 4:], array[4:, :4], array[4:, 4:] = 200, 100, 50
    src = tmp_path / "quads.png"
    Image.fromarray(array).save(src)
    out = tmp_path / "v.png"
    code, _, err = run(
        [
            str(src),
            "--patch",
            "4",
            "--metric",
            "mse",
            "--reference",
            "0",
            "--order",
            "descending",
            "--columns",
            "4",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    picture = np.asarray(Image.open(out).convert("L"))
    # Tiles are 96 px wide (4 px upscaled x24), laid out left to right from x = 6, below the title.
    row = picture[40 + 48]
    centres = [6 + i * (96 + 6) + 48 for i in range(4)]
    assert [int(row[c]) for c in centres] == [200, 100, 50, 0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/nonexistent/pic.png"], "does not exist"),
        (["NOTANIMAGE"], "does not exist"),
        (["sample", "--patch", "24"], "not divisible"),
        (["sample", "--metric", "mutual"], "unknown metric"),
        (["sample", "--reference", "64"], "out of range"),
        (["sample", "--bins", "1"], "bins"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys, tmp_path):
    code, _, err = run([*argv, "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("voldefense volumize: error:")


def test_unreadable_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    code, _, err = run([str(bad), "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2 and "broken.png: not a readable image" in err and len(err.strip().splitlines()) == 1


def test_pad_allows_non_divisible_sizes(tmp_path, capsys):
    code, stdout, err = run(["sample", "--patch", "24", "--pad", "--out", str(tmp_path / "p.png")], capsys)
    assert code == 0, err
    assert "36 patches" in stdout
