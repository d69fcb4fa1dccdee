from django.urls import path, re_path

from archive_app import audit_views, batch_views, liveness, views

urlpatterns = [
    path("", views.home, name="home"),
    path("entries/", views.entry_list, name="entry_list"),
    re_path(r"^entries/export\.(?P<fmt>csv|tsv)$", views.entry_export, name="entry_export"),
    path("entries/<str:entry_id>/", views.entry_detail, name="entry_detail"),
    path("health/", batch_views.health, name="health"),
    path("batches/", batch_views.batch_list, name="batch_list"),
    path("batches/new/", batch_views.batch_create, name="batch_create"),
    path("batches/<int:batch_id>/", batch_views.batch_detail, name="batch_detail"),
    path("batches/<int:batch_id>/approve/", batch_views.batch_approve, name="batch_approve"),
    path("batches/<int:batch_id>/cancel/", batch_views.batch_cancel, name="batch_cancel"),
    path("batches/<int:batch_id>/retry/", batch_views.batch_retry, name="batch_retry"),
    path("audit/", audit_views.audit_log, name="audit_log"),
    path("audit/export.csv", audit_views.audit_export, name="audit_export"),
    path("healthz", liveness.healthz, name="healthz"),
]
