"""Chart macros on pages and the compact map on step pages."""

import re

import pytest
from conftest import SMALL, make_site, page

from site_build.build import build
from site_build.errors import BuildError

pytestmark = pytest.mark.usefixtures("in_tmp")  # fixture pages show as content/x.md

CHARTS = """{{ architecture() }}

{{ attention_heatmaps() }}

{{ attention_heatmaps("grad.L0.attn.weights") }}

{{ gradient_chart() }}

{{ update_chart() }}

{{ update_histogram() }}

{{ loss_chart() }}

{{ before_after_chart() }}
"""


def test_every_chart_macro_renders_and_step_pages_get_the_map(tmp_path):
    text = page(CHARTS).replace("order: 1\n", "order: 1\nstep: attention\n")
    paths = make_site(tmp_path, {"extra.md": text})
    build(SMALL, tmp_path / "out", paths=paths)
    html = (tmp_path / "out" / "extra.html").read_text()
    heads = 2  # small.yaml
    # map + architecture + 2x heads heatmaps + 3 figures + 2 loss curves + before/after
    assert html.count("<svg") == 1 + 1 + 2 * heads + 3 + 2 + 1
    assert html.index('class="step-map"') < html.index("<svg")  # the map comes first
    assert 'aria-current="step"' in html
    assert all(re.search(r"<title[^>]*>[^<]+</title>", s) for s in html.split("<svg")[1:])


def test_unknown_step_names_the_line(tmp_path):
    text = page("x\n").replace("order: 1\n", "order: 1\nstep: attn\n")
    paths = make_site(tmp_path, {"extra.md": text})
    with pytest.raises(BuildError, match=r"content/extra.md:6: unknown step 'attn'"):
        build(SMALL, tmp_path / "out", paths=paths)


def test_heatmaps_need_a_heads_axis(tmp_path):
    paths = make_site(tmp_path, {"extra.md": page('{{ attention_heatmaps("wte") }}\n')})
    message = r"content/extra.md:7: attention_heatmaps needs a record with axes \(batch, heads, tokens, keys\)"
    with pytest.raises(BuildError, match=message):
        build(SMALL, tmp_path / "out", paths=paths)
