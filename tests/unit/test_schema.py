from typing import Any

import pytest

from conveyor.core.schema import TaskSignature
from conveyor.errors import InvalidArguments


def resize(image_id: int, width: int = 800, *, fmt: str = "png") -> str:
    return ""


def test_schema_lists_typed_parameters() -> None:
    schema = TaskSignature("resize", resize).json_schema()
    assert schema["required"] == ["image_id"]
    assert schema["properties"]["width"]["type"] == "integer"
    assert schema["properties"]["fmt"]["default"] == "png"


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ([], {}, "missing a required argument"),
        ([1, 2, 3], {}, "too many positional"),
        (["abc"], {}, "image_id"),
        ([1], {"colour": "red"}, "unexpected keyword"),
    ],
)
def test_mismatched_arguments_are_refused(
    args: list[Any], kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidArguments) as info:
        TaskSignature("resize", resize).validate(args, kwargs)
    assert fragment in str(info.value)


def test_matching_arguments_pass() -> None:
    TaskSignature("resize", resize).validate([1], {"width": 10, "fmt": "jpg"})


def test_var_kwargs_accept_anything() -> None:
    def echo(*args: Any, **kwargs: Any) -> None: ...

    TaskSignature("echo", echo).validate([1, "x"], {"anything": [1]})


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (["5"], {}, "image_id: Input should be a valid integer"),
        ([True], {}, "image_id: Input should be a valid integer"),
        ([1], {"width": 2.5}, "width: Input should be a valid integer"),
        ([1], {"fmt": 5}, "fmt: Input should be a valid string"),
    ],
)
def test_values_of_another_type_are_refused_not_coerced(
    args: list[Any], kwargs: dict[str, Any], fragment: str
) -> None:
    # The task gets the submitted values as they are: "5" would reach it as a string.
    with pytest.raises(InvalidArguments) as info:
        TaskSignature("resize", resize).validate(args, kwargs)
    assert fragment in str(info.value)


def test_an_int_for_a_float_is_accepted() -> None:
    def scale(factor: float) -> None: ...

    TaskSignature("scale", scale).validate([2], {})
