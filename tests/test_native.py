"""Compiling the fast path's C kernels (memrnn.native): a missing or failing compiler says so."""
import pytest

from memrnn import native


def test_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    with pytest.raises(RuntimeError, match="'no-such-compiler' was not found.*fast=False"):
        native.library("noise.c", UNCACHED="missing")


def test_a_failed_compilation_shows_the_compiler(monkeypatch):
    monkeypatch.setenv("CC", "false")  # exists, and fails
    with pytest.raises(RuntimeError, match="compiling .*noise.c with false failed"):
        native.library("noise.c", UNCACHED="failing")
