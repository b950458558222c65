from django.db import migrations, models

# The plan's minimum evidence (plan.yaml min_requests) for the shares of requests already stored.
EVIDENCE = {"error_rate": 100, "cache_hit_ratio": 100}


def forwards(apps, schema_editor):
    ThresholdRule = apps.get_model("health", "ThresholdRule")
    for metric, minimum in EVIDENCE.items():
        ThresholdRule.objects.filter(metric=metric, min_requests=0).update(min_requests=minimum)


class Migration(migrations.Migration):

    dependencies = [
        ("health", "0002_outbound_policy_secret_headers"),
    ]

    operations = [
        migrations.AddField(
            model_name="thresholdrule",
            name="min_requests",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name="thresholdrule",
            constraint=models.UniqueConstraint(fields=("metric", "severity"), name="threshold_one_per_metric_severity"),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
