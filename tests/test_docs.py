"""The documentation: the MkDocs site builds with no broken link or anchor (mkdocs.yml makes every
link problem a warning, --strict makes a warning fail), README's links reach a page and an anchor
the site has, and CI runs the test command README gives."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
TEST_REF = re.compile(r"(?:tests/)?(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason='mkdocs is not installed: pip install -e ".[docs]" to check the docs')
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)


def anchors_of(page: Path) -> set[str]:
    parser = _Ids()
    parser.feed(page.read_text())
    return parser.ids


def built_page(site: Path, doc: str) -> Path:
    """Where MkDocs puts docs/<doc> (index.md at the top, x.md in x/index.html)."""
    stem = doc.removesuffix(".md")
    return site / "index.html" if stem == "index" else site / stem / "index.html"


def test_the_site_builds_strict_and_has_every_page_of_the_nav(site):
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert len(pages) >= 10
    missing = [p for p in pages if not built_page(site, p).is_file()]
    assert not missing, missing
    assert not (site / "notes").exists()  # staging notes are not published


def test_readme_links_reach_a_file_and_an_anchor_the_site_has(site):
    links = LINK.findall(README.read_text())
    assert any(link.startswith("docs/") and "#" in link for link in links), links
    broken = []
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        if not (ROOT / path).exists():
            broken.append(link)
        elif anchor and path.startswith("docs/") and anchor not in anchors_of(built_page(site, path[5:])):
            broken.append(link)
    assert not broken, broken


def test_ci_runs_the_test_command_readme_gives():
    readme = README.read_text()
    test_section = readme[readme.index("## Test"):]
    command = next(line.split("#")[0].strip() for line in test_section.splitlines()
                   if line.startswith("python3 -m pytest"))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci], (command, ci)
    # The docs are built before the tests, so a broken link fails CI early.
    build = next(i for i, line in enumerate(ci) if "mkdocs build --strict" in line)
    assert build < ci.index(command)


def test_every_test_the_docs_name_exists():
    """The pages name the test behind a claim (`test_x.py::test_y`): a renamed or removed test must
    not leave a claim pointing at nothing."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    refs = {(page.name, f, name) for page in pages for f, name in TEST_REF.findall(page.read_text())}
    assert len(refs) > 30
    missing = []
    for page, f, name in sorted(refs):
        path = ROOT / "tests" / f
        defined = {n.name for n in ast.parse(path.read_text()).body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} if path.is_file() else set()
        if name not in defined:
            missing.append(f"{page}: {f}::{name}")
    assert not missing, missing


# ---- the worked example of charging from surplus (docs/power-limits.md) ----------------------

CLOUD_AT, CLOUD_S, AFTER_S = 900, 120, 900


def pv_example_trace():
    """Noon: the house exports 6 kW on three phases; a cloud cuts it to 2 kW for two minutes."""
    from bridge.sim.house import HouseTrace

    amps = [-6000 / (3 * 230)] * CLOUD_AT + [-2000 / (3 * 230)] * CLOUD_S + [-6000 / (3 * 230)] * AFTER_S
    return HouseTrace("pv-example", (amps, list(amps), list(amps)), tuple([True] * len(amps) for _ in range(3)))


def changes(levels) -> list[tuple[int, int]]:
    return [(t, a) for t, a in enumerate(levels) if t == 0 or a != levels[t - 1]]


@pytest.mark.slow
def test_the_pv_example_with_one_connector_waits_the_minimum_pause():
    from bridge.balancer import BalancerConfig
    from bridge.sim.bench import limits_of, real_balancer, replay
    from bridge.sim.power_bench import power_run_factory

    cfg = BalancerConfig()
    trace, power = power_run_factory({"TZ": "Europe/Brussels"}, "2027-04-20T12:00", "L1L2L3:16:pv", 10.0,
                                     cfg.min_current, cfg.default_current)(pv_example_trace())
    levels = replay(trace, real_balancer(cfg, "adaptive"), limits_of(cfg), record=True, power=power).series.charge_at
    steps = changes(levels)
    assert steps[:2] == [(0, 0), (60, 8)], steps  # after 60 s the car starts at 8 A
    stop = next(t for t, a in steps if t > CLOUD_AT and a == 0)
    assert any(a == 6 for t, a in steps if CLOUD_AT < t < stop), steps  # the minimum first, then it stops
    restart = next(t for t, a in steps if t > stop and a > 0)
    # One car is one connector: a car the surplus stopped is paused like any other (as with two).
    assert restart - (CLOUD_AT + CLOUD_S) > 120, steps  # later than the surplus alone would start it
    assert cfg.min_pause_s <= restart - stop <= cfg.min_pause_s + 30, steps


@pytest.mark.slow
def test_the_pv_example_with_two_connectors_waits_the_minimum_pause():
    from bridge.balancer import BalancerConfig
    from bridge.sim.bench import car_key, limits_of, replay_shared, shared_balancer
    from bridge.sim.house import parse_car
    from bridge.sim.power_bench import shared_power_run_factory

    cfg = BalancerConfig()
    trace = pv_example_trace()
    cars = [parse_car("L1L2L3:16:pv"), parse_car("L1L2L3:16:off")]  # an Aura: the other outlet off
    power = shared_power_run_factory({"TZ": "Europe/Brussels"}, "2027-04-20T12:00", 10.0, cfg.min_current,
                                     cfg.default_current)(trace, cars, [car_key(0), car_key(1)])
    balancer = shared_balancer(cfg, "adaptive", cars)
    levels: list[int] = []
    decide = balancer.decide

    def recording(now):
        decision = decide(now)
        levels.append(decision.connectors[0].charge_at)
        return decision

    balancer.decide = recording
    replay_shared(trace, cars, balancer, limits_of(cfg), power=power)
    steps = changes(levels)
    stop = next(t for t, a in steps if t > CLOUD_AT and a == 0)
    restart = next(t for t, a in steps if t > stop and a > 0)
    assert restart - (CLOUD_AT + CLOUD_S) > 120, steps  # later than the surplus alone would start it
    assert cfg.min_pause_s <= restart - stop <= cfg.min_pause_s + 30, steps


# ---- every setting on the configuration page, with its default ----------------------------------

CONFIG_PAGE = ROOT / "docs" / "configuration.md"
VARIABLE_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def settings_table() -> dict[str, str]:
    """The configuration page's settings table: each variable its first column names, with the
    default column. `X_L1` ... `_L3` (or `X_L1`, ... in a row with `...`) stands for L1, L2 and L3."""
    rows: dict[str, str] = {}
    first_section = CONFIG_PAGE.read_text().split("\n## ")[0]
    for line in first_section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        names, default = cells[0], cells[1]
        for name in VARIABLE_NAME.findall(names):
            rows[name] = default
            if name.endswith("_L1") and "..." in names:
                for n in ("2", "3"):
                    rows[name[:-1] + n] = default
    return rows


def shown_default(value: object) -> str | None:
    """How the page writes a default: `false`, `30`, `cloud`; None where it has no literal value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def test_every_setting_is_on_the_configuration_page_with_its_default():
    from pydantic_core import PydanticUndefined

    from bridge.config import Settings, known_variables

    table = settings_table()
    assert len(table) > 50, "the settings table was not found: the pattern is broken"
    missing, wrong = [], []
    for field, info in Settings.model_fields.items():
        name = field.upper()
        if name not in table:
            missing.append(name)
            continue
        default = shown_default(info.default if info.default is not PydanticUndefined else None)
        if not table[name]:
            wrong.append(f"{name}: no default given")
        elif default is not None and f"`{default}`" not in table[name]:
            wrong.append(f"{name}: the page says {table[name]!r}, the default is `{default}`")
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    assert not wrong, wrong
    unknown = sorted(set(table) - known_variables())  # a finer tuning's BALANCER_<FIELD> is read too
    assert not unknown, f"docs/configuration.md names variables the bridge does not read: {unknown}"


def test_env_example_shows_each_default_that_has_a_value():
    """`.env.example`'s `# NAME=value` lines show the default (tests/test_compose.py checks that every
    setting is there); a setting without a default of its own may show an example instead."""
    from pydantic_core import PydanticUndefined

    from bridge.config import Settings

    shown = dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.MULTILINE))
    wrong = []
    for field, info in Settings.model_fields.items():
        default = shown_default(info.default if info.default is not PydanticUndefined else None)
        if default is not None and shown.get(field.upper()) != default:
            wrong.append(f"{field.upper()}: .env.example shows {shown.get(field.upper())!r}, the default is {default!r}")
    assert len(shown) > 50, "no settings found in .env.example: the pattern is broken"
    assert not wrong, wrong
