"""Template tags of the health pages."""

from __future__ import annotations

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils.html import escape
from django.utils.safestring import mark_safe

from portal.outbound import redact_url

register = template.Library()


@register.filter(name="redact_url")
def redact_url_filter(url):
    """A URL as pages show it: userinfo, token-like query values and webhook secrets as ***."""
    return redact_url(str(url or ""))


@register.simple_tag
def sparkline(spark: dict, big: bool = False):
    """The latency sparkline of a check's recent runs as inline SVG (selectors.sparkline_svg_points).

    A tag rather than an included template: the grid draws a hundred of them per page. The figures
    are numbers (formatted here), so only the points string needs escaping."""
    width, height = float(spark["width"]), float(spark["height"])
    fails = spark["fails"]
    label = "latency of the recent runs" + (f", {len(fails)} failed" if fails else "")
    if spark["points"]:
        radius = "3" if big else "1.8"
        circles = "".join(
            f'<circle class="fail" cx="{float(f["x"]):g}" cy="{float(f["y"]):g}" r="{radius}"/>'
            for f in fails
        )
        body = f'<polyline points="{escape(spark["points"])}"/>{circles}'
    else:
        body = f'<line class="empty" x1="0" y1="{height - 2:g}" x2="{width:g}" y2="{height - 2:g}"/>'
    big_class = " spark-big" if big else ""
    return mark_safe(  # noqa: S308 - numbers formatted above and the escaped points string
        f'<svg class="spark{big_class}" viewBox="0 0 {width:g} {height:g}" preserveAspectRatio="none" role="img" '
        f'aria-label="{label}">{body}</svg>'
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
        return mark_safe('<span class="badge status-unknown">disabled</span>')
    status = escape(check.status)
    return mark_safe(  # noqa: S308 - every value escaped
        f'<span class="badge status-{status}" data-status="{status}">{escape(check.get_status_display())}</span>'
    )


@register.simple_tag
def grid_row(row: dict):
    """One row of the health grid (templates/health/_grid.html).

    Built here rather than in the template: the grid has a hundred rows a page, refreshed every
    10 s by every viewer, and per-variable template lookups and escaping were most of the page's
    time. Text is escaped; the figures are numbers formatted here."""
    check = row["check"]
    slug = escape(check.slug)
    env = (
        f' <span class="small muted">{escape(check.environment.name)}</span>' if check.environment_id else ""
    )
    if check.last_result_at:
        last = f'{escape(check.last_reason)} <span class="small muted">· {escape(naturaltime(check.last_result_at))}</span>'
    else:
        last = '<span class="muted">not run yet</span>'
    latency = "–" if check.last_latency_ms is None else f"{check.last_latency_ms:.0f} ms"
    up24 = "–" if row["uptime_24h"] is None else f"{row['uptime_24h']:.2f} %"
    up30 = "–" if row["uptime_30d"] is None else f"{row['uptime_30d']:.2f} %"
    return mark_safe(  # noqa: S308 - text escaped above, the rest are numbers and our own markup
        f'<tr id="check-{slug}" data-check="{slug}"><td><a href="{escape(check.get_absolute_url())}">{escape(check.name)}</a>'
        f'{env}</td><td>{check_status(check)}</td><td class="reason">{last}</td><td class="num">{latency}</td>'
        f'<td class="num">{up24}</td><td class="num">{up30}</td><td>{sparkline(row["spark"])}</td></tr>'
    )
