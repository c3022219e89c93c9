#!/usr/bin/env python3
"""A static HTML render of dashboard.json: each panel where Grafana puts it
(its gridPos on a 24-column grid), with its title, description and
expressions. For a look at the dashboard without a Grafana, and for the
README's picture:

    python3 deploy/observability/render_dashboard.py > /tmp/dashboard.html
    chromium --headless --no-sandbox --hide-scrollbars --window-size=1400,1900 \
        --screenshot=docs/dashboard.png /tmp/dashboard.html
"""

import html
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
COL = 56  # pixels per grid column
ROW = 30  # pixels per grid row


def render(dashboard: dict) -> str:
    boxes = []
    bottom = 0
    for p in dashboard["panels"]:
        g = p["gridPos"]
        bottom = max(bottom, (g["y"] + g["h"]) * ROW)
        exprs = "".join(
            "<li><code>{}</code>{}</li>".format(
                html.escape(t["expr"]),
                " <span>{}</span>".format(html.escape(t["legendFormat"]))
                if t.get("legendFormat")
                else "",
            )
            for t in p.get("targets", [])
        )
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        boxes.append(
            '<div class="panel" style="left:{}px;top:{}px;width:{}px;height:{}px">'
            "<h2>{}</h2><p class=\"kind\">{}{}</p><p>{}</p><ul>{}</ul></div>".format(
                g["x"] * COL,
                g["y"] * ROW,
                g["w"] * COL - 8,
                g["h"] * ROW - 8,
                html.escape(p["title"]),
                html.escape(p["type"]),
                " · unit " + html.escape(unit) if unit else "",
                html.escape(p.get("description", "")),
                exprs,
            )
        )
    return """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{margin:16px;background:#111217;color:#ccccdc;font:13px/1.4 system-ui,sans-serif}}
h1{{font-size:18px;margin:0 0 4px}} .meta{{color:#8e8e9e;margin:0 0 12px}}
.grid{{position:relative;width:{width}px;height:{height}px}}
.panel{{position:absolute;box-sizing:border-box;background:#181b1f;border:1px solid #2c3235;border-radius:3px;padding:8px 10px;overflow:hidden}}
.panel h2{{font-size:14px;margin:0 0 2px;color:#e0e0ec}} .kind{{color:#6e9fff;margin:0 0 4px;font-size:12px}}
.panel p{{margin:0 0 4px}} ul{{margin:4px 0 0;padding-left:16px}} li{{margin-bottom:3px}}
code{{font:12px ui-monospace,monospace;color:#ffb357;white-space:pre-wrap;word-break:break-all}} li span{{color:#8e8e9e}}
</style></head><body><h1>{title}</h1><p class="meta">{desc} · a static render of deploy/observability/dashboard.json</p>
<div class="grid">{boxes}</div></body></html>
""".format(
        title=html.escape(dashboard["title"]),
        desc=html.escape(dashboard.get("description", "")),
        width=24 * COL,
        height=bottom,
        boxes="\n".join(boxes),
    )


if __name__ == "__main__":
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dashboard.json"
    sys.stdout.write(render(json.loads(path.read_text())))
