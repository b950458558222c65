from django import template

register = template.Library()


@register.filter
def rb_seconds(rollback, field: str):
    """Seconds from the rollback request to one of its timestamps."""
    value = rollback.seconds(field)
    return "–" if value is None else value


@register.filter
def num(value, digits: int = 2):
    if value is None:
        return "–"
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return value


@register.filter
def share(value, digits: int = 1):
    """0.0025 -> '0.3 %' (a fraction as a percentage)."""
    if value is None:
        return "–"
    try:
        return f"{float(value) * 100:.{int(digits)}f} %"
    except (TypeError, ValueError):
        return value
