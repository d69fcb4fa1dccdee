"""Create the two role groups with their permissions."""

from django.db import migrations

LIBRARIAN_PERMISSIONS = [
    ("archive_app", "browse_entries"),
    ("archive_app", "run_batches"),
    ("archive_app", "view_entry"),
    ("archive_app", "view_category"),
]
ADMIN_PERMISSIONS = LIBRARIAN_PERMISSIONS + [
    ("archive_app", "restore_entries"),
    ("archive_app", "manage_archive"),
    ("auth", "view_user"),
    ("auth", "add_user"),
    ("auth", "change_user"),
    ("auth", "view_group"),
]
GROUPS = {"Librarians": LIBRARIAN_PERMISSIONS, "Archive admins": ADMIN_PERMISSIONS}


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; make them now.
    for app_label in ("auth", "archive_app"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in codenames:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("archive_app", "0001_mirror"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
