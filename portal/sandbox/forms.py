from __future__ import annotations

from django import forms

from portal.cloud.models import Drill, Environment


class DrillForm(forms.Form):
    environment = forms.ModelChoiceField(queryset=Environment.objects.filter(credentials_mode=Environment.CredentialsMode.STATIC),
                                         to_field_name="name", empty_label=None)
    kind = forms.ChoiceField(choices=Drill.Kind.choices)
    colour = forms.ChoiceField(choices=[("", "both / not per colour"), ("blue", "blue"), ("green", "green")], required=False)
    level = forms.FloatField(required=False, help_text="percent for rates, seconds for latency, instances for unhealthy-instance, percent of the phase budget for cost-spike")
    minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=10)
    service = forms.CharField(required=False, max_length=50, help_text="for service-outage: openai, twilio, sendgrid, stripe, trueway")
    seed = forms.IntegerField(required=False, min_value=0, max_value=2_147_483_647)
