import json

import django.db.models.deletion
from django.db import migrations, models

import portal.cloud.fields


def forwards(apps, schema_editor):
    """Headers kept in a check's config move to the encrypted field; the sandbox keeps reaching 127.0.0.1."""
    Check = apps.get_model("health", "Check")
    for check in Check.objects.all():
        headers = (check.config or {}).get("headers")
        if headers:
            check.secret_headers = json.dumps(headers)
            check.config = {k: v for k, v in check.config.items() if k != "headers"}
            check.save(update_fields=["secret_headers", "config"])
    Environment = apps.get_model("cloud", "Environment")
    OutboundPolicy = apps.get_model("health", "OutboundPolicy")
    for env in Environment.objects.filter(name="sandbox", credentials_mode="static"):
        OutboundPolicy.objects.get_or_create(environment=env, defaults={"allow_private_targets": True})


class Migration(migrations.Migration):

    dependencies = [
        ('cloud', '0004_drill_public_id'),
        ('health', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='check',
            name='secret_headers',
            field=portal.cloud.fields.EncryptedTextField(blank=True, default=''),
        ),
        migrations.CreateModel(
            name='OutboundPolicy',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('allow_private_targets', models.BooleanField(default=False, help_text='Allow loopback, private and link-local addresses (only for the local sandbox)')),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('environment', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='outbound_policy', to='cloud.environment')),
            ],
            options={
                'verbose_name_plural': 'outbound policies',
            },
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
