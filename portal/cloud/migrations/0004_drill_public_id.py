import uuid

from django.db import migrations, models


def fill(apps, schema_editor):
    Drill = apps.get_model("cloud", "Drill")
    for drill in Drill.objects.filter(public_id__isnull=True).only("pk"):
        drill.public_id = uuid.uuid4()
        drill.save(update_fields=["public_id"])


class Migration(migrations.Migration):

    dependencies = [
        ("cloud", "0003_prometheus_queries"),
    ]

    operations = [
        migrations.AddField(model_name="drill", name="public_id", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(model_name="drill", name="public_id",
                              field=models.UUIDField(default=uuid.uuid4, unique=True, editable=False)),
    ]
