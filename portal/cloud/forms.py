from __future__ import annotations

import json
import re
from urllib.parse import urlparse

from django import forms
from django.conf import settings

from portal.cloud.models import Environment
from portal.cloud.services import ENV_EDITABLE, ENV_SECRETS

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")

# secret -> (label, what "remove the stored ..." calls it, longest accepted)
SECRET_LABELS = {"external_id": ("External id", "external id", 1224),
                 "cloudflare_api_token": ("CloudFlare API token", "CloudFlare API token", 400),
                 "grafana_token": ("Grafana token", "Grafana token", 400)}

# The edit page's sections, in order; a field of the form named in none goes into the last one.
FIELDSETS = (
    ("Account and credentials", ("name", "description", "is_production", "region", "credentials_mode", "profile",
                                 "role_arn", "external_id", "clear_external_id", "endpoint_url")),
    ("Platform resources", ("listener_arn", "load_balancer_arn", "blue_asg", "green_asg", "blue_target_group_arn",
                            "green_target_group_arn", "launch_template_id", "rds_instance_id",
                            "cache_replication_group_id", "buckets")),
    ("Metrics", ("metrics_source", "platform_namespace", "alb_dimension", "blue_tg_dimension", "green_tg_dimension",
                 "prometheus_url", "prometheus_queries")),
    ("Edge: DNS, CDN and storage", ("dns_provider", "cdn_provider", "storage_provider", "cloudflare_zone",
                                    "cloudflare_account_id", "cloudflare_api_token", "clear_cloudflare_api_token",
                                    "cloudflare_base_url")),
    ("Dashboards (Grafana)", ("grafana_url", "grafana_token", "clear_grafana_token")),
    ("Automation", ("dry_run",)),
)


def _http_url(value: str, example: str) -> str:
    url = (value or "").strip()
    if url:
        p = urlparse(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise forms.ValidationError(f"Give a full http(s) URL with a host, such as {example}")
    return url


class EnvironmentForm(forms.ModelForm):
    """An environment's settings. The secrets are write-only: their inputs start empty whatever is stored,
    an empty one keeps the stored value, a ticked "remove" clears it (views pass secrets()/cleared())."""

    class Meta:
        model = Environment
        fields = list(ENV_EDITABLE)
        widgets = {"buckets": forms.Textarea(attrs={"rows": 3}), "prometheus_queries": forms.Textarea(attrs={"rows": 4})}
        labels = {"dns_provider": "DNS provider", "cdn_provider": "CDN provider", "storage_provider": "Storage provider",
                  "cloudflare_zone": "CloudFlare zone", "cloudflare_account_id": "CloudFlare account id",
                  "cloudflare_base_url": "CloudFlare API base URL", "grafana_url": "Grafana URL"}
        help_texts = {"grafana_url": "Grafana's HTTP API for the dashboards check; empty: dashboards are signed off by people only."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ENV_SECRETS:
            label, noun, max_length = SECRET_LABELS[name]
            stored = bool(self.instance.pk and getattr(self.instance, name))
            self.fields[name] = forms.CharField(
                required=False, max_length=max_length, strip=True, label=label,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                help_text=("Write-only, stored encrypted. One is stored: leave empty to keep it." if stored
                           else "Write-only, stored encrypted. None is stored yet."))
            if stored:
                self.fields[f"clear_{name}"] = forms.BooleanField(required=False, label=f"Remove the stored {noun}")

    def fieldsets(self) -> list[tuple[str, list]]:
        placed: set[str] = set()
        out = []
        for legend, names in FIELDSETS:
            present = [n for n in names if n in self.fields]
            placed.update(present)
            out.append((legend, [self[n] for n in present]))
        out[-1][1].extend(self[n] for n in self.fields if n not in placed)
        return [(legend, fields) for legend, fields in out if fields]

    def secrets(self) -> dict[str, str]:
        """The secrets typed in (empty ones left out: they keep what is stored)."""
        return {k: self.cleaned_data[k] for k in ENV_SECRETS if self.cleaned_data.get(k)}

    def cleared(self) -> list[str]:
        return [k for k in ENV_SECRETS if self.cleaned_data.get(f"clear_{k}")]

    def _secret_after(self, name: str) -> bool:
        """Whether the environment will hold this secret once the form is saved."""
        if self.cleaned_data.get(name):
            return not self.cleaned_data.get(f"clear_{name}")
        return bool(self.instance.pk and getattr(self.instance, name)) and not self.cleaned_data.get(f"clear_{name}")

    def clean_endpoint_url(self):
        return _http_url(self.cleaned_data.get("endpoint_url", ""), "http://127.0.0.1:4566")

    def clean_prometheus_url(self):
        return _http_url(self.cleaned_data.get("prometheus_url", ""), "http://prometheus.internal:9090")

    def clean_cloudflare_base_url(self):
        return _http_url(self.cleaned_data.get("cloudflare_base_url", ""), "http://127.0.0.1:4582/client/v4")

    def clean_grafana_url(self):
        return _http_url(self.cleaned_data.get("grafana_url", ""), "https://grafana.example.com")

    def clean_cloudflare_zone(self):
        return (self.cleaned_data.get("cloudflare_zone") or "").strip().rstrip(".").lower()

    def clean_cloudflare_account_id(self):
        return (self.cleaned_data.get("cloudflare_account_id") or "").strip()

    def clean_buckets(self):
        value = self.cleaned_data.get("buckets") or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise forms.ValidationError('Buckets are a JSON object of names, e.g. {"photos": "my-photos-bucket"}')
        return value

    def clean_prometheus_queries(self):
        from portal.cloud.metrics import METRICS

        value = self.cleaned_data.get("prometheus_queries") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("PromQL overrides are a JSON object: metric name -> query")
        unknown = [k for k in value if k not in METRICS]
        if unknown:
            raise forms.ValidationError(f"Unknown metric(s): {', '.join(unknown)}. Known: {', '.join(METRICS)}")
        return value

    def clean(self):
        data = super().clean()
        mode = data.get("credentials_mode")
        if mode == Environment.CredentialsMode.ROLE and not ROLE_ARN.match(data.get("role_arn") or ""):
            self.add_error("role_arn", "Assuming a role needs its ARN, e.g. arn:aws:iam::123456789012:role/ops-portal")
        if mode == Environment.CredentialsMode.PROFILE and not data.get("profile"):
            self.add_error("profile", "Name the AWS profile to use")
        if mode == Environment.CredentialsMode.STATIC and data.get("is_production"):
            self.add_error("credentials_mode", "Static test keys are for the local sandbox, never for production")
        if data.get("metrics_source") == Environment.MetricsSource.PROMETHEUS and not data.get("prometheus_url"):
            self.add_error("prometheus_url", "The Prometheus metrics source needs the server's URL")
        cloudflare = Environment.Provider.CLOUDFLARE
        on_cloudflare = [label for key, label in (("dns_provider", "DNS"), ("cdn_provider", "the CDN"),
                                                  ("storage_provider", "storage")) if data.get(key) == cloudflare]
        if on_cloudflare:
            what = " and ".join(on_cloudflare)
            if not data.get("cloudflare_zone"):
                self.add_error("cloudflare_zone", f"CloudFlare for {what} needs the zone's name, e.g. fairtradeworker.com")
            if not self._secret_after("cloudflare_api_token") and not settings.CLOUDFLARE_API_TOKEN:
                self.add_error("cloudflare_api_token", f"CloudFlare for {what} needs an API token (none is stored)")
        if data.get("storage_provider") == cloudflare and not data.get("cloudflare_account_id"):
            self.add_error("cloudflare_account_id", "Storage on CloudFlare (R2) needs the account id that owns the buckets")
        return data

    def changes(self) -> dict:
        return {k: self.cleaned_data[k] for k in ENV_EDITABLE if k in self.cleaned_data}


class NewEnvironmentForm(EnvironmentForm):
    name = forms.SlugField(max_length=50, help_text="production, staging, ... (used in URLs and the API)")

    field_order = ["name"]

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name in ("new", "drills"):
            raise forms.ValidationError(f"{name} is taken by a page of the portal; choose another name.")
        if Environment.objects.filter(name=name).exists():
            raise forms.ValidationError(f"An environment named {name} exists already.")
        return name


def pretty_json(value) -> str:
    return json.dumps(value or {}, indent=2, sort_keys=True)
