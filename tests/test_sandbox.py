"""The README's sandbox demos run and pass their own checks (each compares the runbooks' reports
with what its fleet was seeded to produce), so the quick start stays true."""

from __future__ import annotations

import pytest

from sandbox.__main__ import main


@pytest.mark.parametrize(
    "argv, closing",
    [
        (["sweep"], "Sandbox check passed"),
        (["sweep", "--dry-run"], "Sandbox check passed"),
        (["evening"], "Sandbox evening passed"),
        (["create"], "Sandbox check passed"),
        (["start"], "Sandbox check passed"),
        (["teams"], "Sandbox teams passed"),
        (["publish"], "Sandbox publish passed"),
    ],
)
def test_sandbox_demo(argv, closing, capsys):
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert closing in out.splitlines()[-1]
