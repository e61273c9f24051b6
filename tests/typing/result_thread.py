"""Type-checked, never run: the public ResultThread signatures infer as promised."""

from __future__ import annotations

from concurrent.futures import Future
from typing import assert_type

from safethreads import CancelToken, ResultThread, spawn


def _int_from(text: str, base: int = 10) -> int:
    return int(text, base)


def check_spawn_infers_result_type() -> None:
    assert_type(spawn(int, "3"), ResultThread[int])
    assert_type(spawn(_int_from, "ff", base=16), ResultThread[int])
    assert_type(spawn(str.upper, "abc").result(), str)
    assert_type(spawn(len, "abc").result(timeout=1.0), int)
    assert_type(spawn(len, "abc").exception(), BaseException | None)
    assert_type(spawn(len, "abc").done(), bool)
    assert_type(spawn(len, "abc").as_future(), Future[int])


def check_spawn_rejects_wrong_arguments() -> None:
    spawn(_int_from, 3)  # type: ignore[arg-type]
    spawn(_int_from, "3", bass=2)  # type: ignore[call-arg]


def check_constructor_infers_from_target() -> None:
    t = ResultThread(target=_int_from, args=("7",), name="seven", daemon=True)
    assert_type(t, ResultThread[int])
    assert_type(t.result(), int)


class _Words(ResultThread[list[str]]):
    def __init__(self, text: str) -> None:
        super().__init__(name="words")
        self.text = text

    def compute(self) -> list[str]:
        return self.text.split()


class _WrongReturn(ResultThread[int]):
    def compute(self) -> str:  # type: ignore[override]
        return "not an int"


def check_class_based() -> None:
    t = _Words("a b")
    assert_type(t.result(), list[str])
    assert_type(t.compute(), list[str])


class _RunOverride(ResultThread[int]):
    # mypy compares an override with every base, threading.Thread.run
    # (-> None) included; pyright accepts this line as it is.
    def run(self) -> int:  # type: ignore[override]
        return 1


class _RunNone(ResultThread[None]):
    def run(self) -> None:  # the threading idiom, unchanged
        pass


class _RunWrong(ResultThread[int]):
    def run(self) -> str:  # type: ignore[override]
        return "not an int"


def check_run_override() -> None:
    assert_type(_RunOverride().result(), int)
    assert_type(_RunOverride().run(), int)
    assert_type(_RunNone().result(), None)


def check_cancel_keyword(token: CancelToken) -> None:
    t = spawn(len, "abc")
    assert_type(t.result(cancel=token), int)
    assert_type(t.exception(1.0, cancel=token), BaseException | None)
    assert_type(token.wait(1.0, cancel=CancelToken()), bool)
    t.result(cancel=3)  # type: ignore[arg-type]
