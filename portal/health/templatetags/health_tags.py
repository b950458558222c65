"""Template tags of the health pages."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


@register.simple_tag
def sparkline(spark: dict, big: bool = False):
    """The latency sparkline of a check's recent runs as inline SVG (selectors.sparkline_svg_points).

    A tag rather than an included template: the grid draws a hundred of them per page, and an
    include per row with a loop over the failure marks cost more than the rest of the row."""
    width, height = spark["width"], spark["height"]
    fails = spark["fails"]
    label = "latency of the recent runs" + (f", {len(fails)} failed" if fails else "")
    if spark["points"]:
        radius = "3" if big else "1.8"
        body = format_html(
            '<polyline points="{}"/>{}',
            spark["points"],
            format_html_join("", '<circle class="fail" cx="{}" cy="{}" r="{}"/>', ((f["x"], f["y"], radius) for f in fails)),
        )
    else:
        body = format_html('<line class="empty" x1="0" y1="{}" x2="{}" y2="{}"/>', height - 2, width, height - 2)
    return format_html(
        '<svg class="spark{}" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" aria-label="{}">{}</svg>',
        " spark-big" if big else "", width, height, label, body,
    )


@register.filter
def fixed(value, digits: int = 0):
    """A number with a fixed number of decimals ("99.50"); `floatformat` goes through Decimal and
    localisation, which the grid's hundreds of figures a page do not need."""
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return value


@register.simple_tag
def check_status(check):
    """A check's status badge (disabled checks say so whatever their last status)."""
    if not check.enabled:
        return format_html('<span class="badge status-unknown">disabled</span>')
    return format_html('<span class="badge status-{}" data-status="{}">{}</span>', check.status, check.status,
                       check.get_status_display())
