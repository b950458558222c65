from django import template

register = template.Library()


@register.filter
def minutes(value) -> str:
    """Minutes as '12 min' or '3.5 h'; '-' when there is no figure."""
    if value is None:
        return "-"
    if value < 90:
        return f"{value:.0f} min" if value >= 10 else f"{value:.1f} min"
    return f"{value / 60:.1f} h"
