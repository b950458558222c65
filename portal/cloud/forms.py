from __future__ import annotations

import json
import re
from urllib.parse import urlparse

from django import forms

from portal.cloud.models import Environment
from portal.cloud.services import ENV_EDITABLE

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


class EnvironmentForm(forms.ModelForm):
    external_id = forms.CharField(required=False, max_length=1224, strip=True, label="External id",
                                  widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                                  help_text="Write-only: leave empty to keep the stored one.")
    clear_external_id = forms.BooleanField(required=False, label="Remove the stored external id")

    class Meta:
        model = Environment
        fields = list(ENV_EDITABLE)
        widgets = {"buckets": forms.Textarea(attrs={"rows": 3}), "prometheus_queries": forms.Textarea(attrs={"rows": 4})}

    def clean_endpoint_url(self):
        url = self.cleaned_data.get("endpoint_url", "").strip()
        if url:
            p = urlparse(url)
            if p.scheme not in ("http", "https") or not p.hostname:
                raise forms.ValidationError("Give a full URL such as http://127.0.0.1:4566")
        return url

    def clean_prometheus_url(self):
        url = self.cleaned_data.get("prometheus_url", "").strip()
        if url and urlparse(url).scheme not in ("http", "https"):
            raise forms.ValidationError("Give a full http(s) URL of the Prometheus server")
        return url

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
