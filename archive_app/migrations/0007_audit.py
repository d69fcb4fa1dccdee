"""Archive admins may view audit events in the Django admin (read-only there; the app has its own page)."""

from django.db import migrations, models


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; make them now.
    app_config = apps.get_app_config("archive_app")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Archive admins")
    group.permissions.add(Permission.objects.get(content_type__app_label="archive_app", codename="view_auditevent"))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="Archive admins"):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="archive_app", codename="view_auditevent")
        )


class Migration(migrations.Migration):
    dependencies = [("archive_app", "0006_restores")]

    operations = [
        migrations.RunPython(grant, revoke),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["username", "-created_at", "-id"], name="auditevent_user_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["-created_at", "-id"], name="auditevent_newest"),
        ),
    ]
