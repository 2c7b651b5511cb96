from __future__ import annotations

import pytest

from four11.core import groups as g
from four11.core.errors import ConfigError


@pytest.mark.parametrize(("raw", "norm"), [
    ("/", "/"), ("", "/"), ("Compute/green", "/Compute/green"), ("/Compute/green/", "/Compute/green"),
    ("a space/yellow", "/a space/yellow"), ("//compute//light", "/compute/light"),
])
def test_normalize(raw, norm):
    assert g.normalize(raw) == norm


@pytest.mark.parametrize("bad", ["/a/../b", "/./x", "/x\x00y", "/ lead", "/trail /x"])
def test_normalize_refuses(bad):
    with pytest.raises(ConfigError):
        g.normalize(bad)


def test_hierarchical_match_whole_components():
    acc = g.accepted(["/compute/light"])
    assert acc == {"/", "/compute", "/compute/light"}
    assert "/compute/heavy" not in acc
    assert "/comp" not in acc
    assert "/compute/light/x" not in acc


def test_case_sensitive_and_spaces():
    acc = g.accepted(["Compute/green", "a space/yellow"])
    assert "/Compute" in acc and "/compute" not in acc
    assert "/a space/yellow" in acc


def test_every_node_is_in_root():
    assert g.accepted([]) == {"/"}
