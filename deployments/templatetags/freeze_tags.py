"""The freeze banner (templates/deployments/_banner.html, loaded on every page, and the deployments page)."""

from django import template

from deployments import freezes

register = template.Library()


@register.inclusion_tag("deployments/_freeze_banner.html")
def freeze_banner(env=None):
    """Every frozen environment, or only `env` when given."""
    if env is not None:
        found = freezes.active_freezes(env)
        return {"frozen": [(env, found)] if found else []}
    return {"frozen": freezes.frozen_environments()}
