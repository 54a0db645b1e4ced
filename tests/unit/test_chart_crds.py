"""The Helm chart's crds/ folder is generated from the models, like crds/generated/ (one source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crds.generate import GENERATED_DIR, main, render_all, stale_files

pytestmark = pytest.mark.unit

CHART_CRDS = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "crds"


def test_the_charts_crds_are_in_sync_with_the_models() -> None:
    assert stale_files(CHART_CRDS, crds_only=True) == [], (
        "deploy/chart/crds is stale: run `make generate-crd`"
    )
    assert main(["--check", "--crds-only", "--dir", str(CHART_CRDS)]) == 0


def test_the_charts_crds_are_the_generated_crds_and_nothing_else() -> None:
    chart_files = sorted(p.name for p in CHART_CRDS.iterdir())
    assert chart_files == sorted(render_all(crds_only=True))
    for name in chart_files:
        assert (CHART_CRDS / name).read_text() == (GENERATED_DIR / name).read_text()


def test_a_hand_edit_of_a_chart_crd_is_reported_stale(tmp_path: Path) -> None:
    for name, content in render_all(crds_only=True).items():
        (tmp_path / name).write_text(content)
    (tmp_path / "pipelines.yaml").write_text("# edited by hand\n")
    assert stale_files(tmp_path, crds_only=True) == ["pipelines.yaml"]
    assert main(["--check", "--crds-only", "--dir", str(tmp_path)]) == 1
