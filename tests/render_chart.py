#!/usr/bin/env python3
"""Renders or lints the Helm chart with the real Helm v4 SDK, for the Rust tests.

    render_chart.py render CHART_DIR VALUES_JSON [RELEASE NAMESPACE]
                                                   -> {"template path": "manifest", ...}
    render_chart.py lint   CHART_DIR VALUES_JSON   -> helm lint report
    render_chart.py schema CHART_DIR VALUES_JSON   -> validates values against values.schema.json

Exits non-zero with the reason on stderr; never skips.
"""
import json
import sys

try:
    import helm_python as helm
except ImportError as e:  # the test must fail, not skip, without a renderer
    sys.exit(f"python module helm_python is missing ({e}): pip install helm-python-sdk")


def main() -> None:
    if len(sys.argv) not in (4, 6):
        sys.exit(__doc__)
    mode, chart_dir, values_json = sys.argv[1], sys.argv[2], sys.argv[3]
    release, namespace = sys.argv[4:6] if len(sys.argv) == 6 else ("storage-valet", "storage-valet")
    values = json.loads(values_json)
    try:
        if mode == "render":
            chart = helm.Chart.load(chart_dir)
            chart.validate_schema(values)
            out = chart.render(values, name=release, namespace=namespace, is_install=True)
        elif mode == "lint":
            out = helm.lint(chart_dir, values, strict=True, namespace=namespace)
        elif mode == "schema":
            helm.Chart.load(chart_dir).validate_schema(values)
            out = {"valid": True}
        else:
            sys.exit(f"unknown mode {mode!r}")
    except helm.HelmError as e:
        sys.exit(f"helm {mode}: {e}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
