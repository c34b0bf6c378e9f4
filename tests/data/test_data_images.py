"""The one image-reading path (`voldefense.data.images.read_image`): every problem with a file is one `DataError`
line naming the file and the fix, whoever reads it (an image folder, `voldefense volumize`)."""

from __future__ import annotations

import pytest
from image_files import write_bomb_png
from PIL import Image

from voldefense.cli import main
from voldefense.data import load_dataset
from voldefense.data.images import read_image
from voldefense.errors import DataError


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_grey_stays_grey_only_when_asked(tmp_path):
    Image.new("L", (5, 4), 7).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").mode == "RGB"
    kept = read_image(tmp_path / "g.png", mode="keep_grey")
    assert kept.mode == "L" and kept.size == (5, 4) and kept.getpixel((0, 0)) == 7


def test_every_problem_is_one_line_naming_the_file_and_the_fix(tmp_path):
    assert error_of(tmp_path / "none.png").endswith("image file does not exist; check the path")
    (tmp_path / "text.png").write_text("not an image")
    assert "not a readable image (UnidentifiedImageError" in error_of(tmp_path / "text.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    assert error_of(tmp_path / "cut.png").endswith("; replace it with a PNG or JPEG")


def test_a_decompression_bomb_is_refused_the_same_way_by_the_folder_loader_and_volumize(tmp_path, capsys):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    bomb = write_bomb_png(tmp_path / "train" / "cat" / "bomb.png")
    message = error_of(bomb)
    assert "refused as a likely decompression bomb (Image size (400000000 pixels) exceeds limit" in message
    assert message.endswith("; use a smaller image")

    with pytest.raises(DataError) as info:
        load_dataset("imagefolder", split="train", root=tmp_path)[0]
    assert str(info.value) == message

    assert main(["volumize", str(bomb), "--out", str(tmp_path / "v.png")]) == 2
    assert capsys.readouterr().err == f"voldefense volumize: error: {message}\n"
    assert not (tmp_path / "v.png").exists()
