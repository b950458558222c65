"""Markdown for runbook step text: python-markdown, then nh3's allowlist (runbook files are reviewed, but still not trusted HTML)."""

from __future__ import annotations

import markdown as _markdown
import nh3
from django import template
from django.utils.dateparse import parse_datetime
from django.utils.safestring import mark_safe

register = template.Library()

_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "blockquote", "a", "h3", "h4", "hr",
         "table", "thead", "tbody", "tr", "th", "td"}


def render_markdown(text: str) -> str:
    html = _markdown.markdown(text or "", extensions=["fenced_code", "tables", "sane_lists"])
    return nh3.clean(html, tags=_TAGS, attributes={"a": {"href", "title"}}, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    return mark_safe(render_markdown(text))  # noqa: S308 - sanitised by nh3 above


@register.filter
def get_item(mapping, key):
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def iso(value):
    """An ISO 8601 string (as stored in evidence JSON) as a datetime for the |date filter."""
    if not isinstance(value, str):
        return value
    return parse_datetime(value)
