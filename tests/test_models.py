"""Every input limit of the reference, enforced at construction with a typed error."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from wavespeed_async import ImageEdit, InvalidInput, Prediction, Status, TextToVideo

IMAGE = "https://example.com/in.png"


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"prompt": ""}, "prompt", "non-empty"),
        ({"prompt": "   "}, "prompt", "non-empty"),
        ({"prompt": 42}, "prompt", "non-empty"),
        ({"prompt": "fox", "aspect_ratio": "2:1"}, "aspect_ratio", "16:9, 4:3, 1:1"),
        ({"prompt": "fox", "aspect_ratio": "16x9"}, "aspect_ratio", "9:21"),
        ({"prompt": "fox", "seed": -2}, "seed", "-1 to 2147483647"),
        ({"prompt": "fox", "seed": 2_147_483_648}, "seed", "-1 to 2147483647"),
        ({"prompt": "fox", "seed": 1.5}, "seed", "an integer"),
        ({"prompt": "fox", "seed": True}, "seed", "an integer"),
    ],
)
def test_text_to_video_rejects_out_of_range_input(
    kwargs: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(InvalidInput, match=allowed) as info:
        TextToVideo(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"prompt": "x" * 121}, "prompt", "at most 120 characters"),
        ({"prompt": ""}, "prompt", "non-empty"),
        ({"image": ""}, "image", "image URL"),
        ({"size": (511, 1024)}, "size", "512 to 2048"),
        ({"size": (1024, 2049)}, "size", "512 to 2048"),
        ({"size": "2049*1024"}, "size", "512 to 2048"),
        ({"size": "big"}, "size", "W\\*H"),
        ({"size": (1024,)}, "size", "W\\*H"),
        ({"seed": -2}, "seed", "-1 to 2147483647"),
        ({"seed": 2_147_483_648}, "seed", "-1 to 2147483647"),
        ({"enable_base64_output": "yes"}, "enable_base64_output", "True or False"),
        ({"enable_sync_mode": 1}, "enable_sync_mode", "True or False"),
    ],
)
def test_image_edit_rejects_out_of_range_input(
    kwargs: dict[str, Any], field: str, allowed: str
) -> None:
    arguments: dict[str, Any] = {"prompt": "make it snow", "image": IMAGE, **kwargs}
    with pytest.raises(InvalidInput, match=allowed) as info:
        ImageEdit(**arguments)
    assert info.value.field == field


def test_limits_themselves_are_accepted() -> None:
    assert TextToVideo("fox", seed=-1).seed == -1
    assert TextToVideo("fox", seed=2_147_483_647).seed == 2_147_483_647
    for ratio in ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"):
        assert TextToVideo("fox", aspect_ratio=ratio).aspect_ratio == ratio
    edit = ImageEdit("x" * 120, image=IMAGE, size=(512, 2048))
    assert edit.size == (512, 2048)


@pytest.mark.parametrize("size", ["1024*768", "1024x768", [1024, 768], (1024, 768)])
def test_image_edit_size_accepts_the_api_string_and_pairs(size: Any) -> None:
    assert ImageEdit("snow", image=IMAGE, size=size).size == (1024, 768)


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="prompt"):
        TextToVideo("")


def test_payloads_are_frozen() -> None:
    video = TextToVideo("fox")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        video.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "status", "terminal", "failure"),
    [
        ("created", Status.CREATED, False, False),
        ("processing", Status.PROCESSING, False, False),
        ("completed", Status.COMPLETED, True, False),
        ("failed", Status.FAILED, True, True),
        ("cancelled", Status.CANCELLED, True, True),
        ("timeout", Status.TIMEOUT, True, True),
        ("deleted", Status.DELETED, True, True),
        ("COMPLETED", Status.COMPLETED, True, False),
        ("queued_for_gpu", Status.UNKNOWN, False, False),
        ("", Status.UNKNOWN, False, False),
    ],
)
def test_status_parsing_and_terminality(
    text: str, status: Status, terminal: bool, failure: bool
) -> None:
    parsed = Status.parse(text)
    assert parsed is status
    assert parsed.is_terminal is terminal
    assert parsed.is_failure is failure


def test_huge_invalid_values_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidInput) as info:
        ImageEdit("x" * 10_000, image=IMAGE)
    assert len(str(info.value)) < 200
    assert "10002 characters" in str(info.value)


@pytest.mark.parametrize(
    "size",
    [
        (1024.0, 1024),
        (1024, 768.5),
        [True, 1024],
        ("1024", "768"),
        "1024.0*768",
        "1024*768*2",
        (1024, 768, 1),
        1024,
        None,
    ],
)
def test_image_edit_size_must_be_two_whole_numbers(size: Any) -> None:
    with pytest.raises(InvalidInput, match="W\\*H") as info:
        ImageEdit("snow", image=IMAGE, size=size)
    assert info.value.field == "size"


@pytest.mark.parametrize("image", [None, 42, "   ", b"https://x/y.png"])
def test_image_edit_needs_an_image_string(image: Any) -> None:
    with pytest.raises(InvalidInput, match="image URL, a data: URI or a base64") as info:
        ImageEdit("snow", image=image)
    assert info.value.field == "image"


def test_defaults_are_the_apis() -> None:
    video = TextToVideo("fox")
    assert (video.aspect_ratio, video.seed) == ("16:9", -1)
    edit = ImageEdit("snow", image=IMAGE)
    assert (edit.size, edit.seed) == ((1328, 1328), -1)
    assert (edit.enable_base64_output, edit.enable_sync_mode) == (False, False)
    assert TextToVideo.model_id == "bytedance/dreamina-v3.0-pro/text-to-video"
    assert ImageEdit.model_id == "bytedance/dreamina-v3.0/edit"


def test_the_edit_size_limits_themselves_are_accepted() -> None:
    assert ImageEdit("snow", image=IMAGE, size="512X2048").size == (512, 2048)
    assert ImageEdit("snow", image=IMAGE, size=(2048, 512)).size == (2048, 512)


def test_the_invalid_input_message_names_field_value_and_allowed() -> None:
    with pytest.raises(InvalidInput) as info:
        TextToVideo("fox", aspect_ratio="2:1")
    assert str(info.value) == (
        "aspect_ratio='2:1' is invalid: must be one of 16:9, 4:3, 1:1, 3:4, 9:16, 21:9, 9:21"
    )
    assert (info.value.value, info.value.allowed) == (
        "2:1",
        "one of 16:9, 4:3, 1:1, 3:4, 9:16, 21:9, 9:21",
    )
    with pytest.raises(InvalidInput) as long_prompt:
        ImageEdit("x" * 121, image=IMAGE)
    assert "at most 120 characters (got 121)" in str(long_prompt.value)
    with pytest.raises(InvalidInput, match="a non-empty string"):
        ImageEdit(" ", image=IMAGE)
    with pytest.raises(InvalidInput, match="an integer from -1 to 2147483647 \\(-1 = random\\)"):
        TextToVideo("fox", seed="7")  # type: ignore[arg-type]


def test_a_prediction_exposes_its_first_output() -> None:
    assert Prediction("p", outputs=("a", "b")).output == "a"
    assert Prediction("p").output is None
    assert Prediction("p").status is Status.UNKNOWN
    assert Prediction("p").urls == {}
    assert Prediction("p").input == {}


def test_status_values_are_the_api_strings() -> None:
    assert [status.value for status in Status] == [
        "created",
        "processing",
        "completed",
        "failed",
        "cancelled",
        "timeout",
        "deleted",
        "unknown",
    ]
    assert Status.parse("  Processing ") is Status.PROCESSING
    assert not Status.UNKNOWN.is_terminal


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: TextToVideo("fox", seed=1.5),  # type: ignore[arg-type]
            ("seed", 1.5, "an integer from -1 to 2147483647 (-1 = random)"),
        ),
        (lambda: TextToVideo(" "), ("prompt", " ", "a non-empty string")),
        (lambda: ImageEdit(None, image=IMAGE), ("prompt", None, "a non-empty string")),  # type: ignore[arg-type]
        (
            lambda: ImageEdit("x" * 121, image=IMAGE),
            ("prompt", "x" * 121, "at most 120 characters (got 121)"),
        ),
        (
            lambda: ImageEdit("snow", image=IMAGE, enable_sync_mode=1),  # type: ignore[arg-type]
            ("enable_sync_mode", 1, "True or False"),
        ),
        (
            lambda: ImageEdit("snow", image=" "),
            ("image", " ", "an image URL, a data: URI or a base64-encoded image"),
        ),
        (
            lambda: ImageEdit("snow", image=IMAGE, size="big"),
            ("size", "big", "(width, height) or 'W*H', each from 512 to 2048"),
        ),
        (
            lambda: ImageEdit("snow", image=IMAGE, size=7),
            ("size", 7, "(width, height) or 'W*H', each from 512 to 2048"),
        ),
        (
            lambda: ImageEdit("snow", image=IMAGE, size=(100, 100)),
            ("size", (100, 100), "(width, height) or 'W*H', each from 512 to 2048"),
        ),
    ],
)
def test_payload_errors_name_the_field_the_value_and_what_is_allowed(
    build: Any, expected: tuple[str, Any, str]
) -> None:
    with pytest.raises(InvalidInput) as info:
        build()
    assert (info.value.field, info.value.value, info.value.allowed) == expected
