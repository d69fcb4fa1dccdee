from django.urls import path, re_path

from archive_app.web import audit_views, batch_views, liveness, restore_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("entries/", views.entry_list, name="entry_list"),
    re_path(r"^entries/export\.(?P<fmt>csv|tsv)$", views.entry_export, name="entry_export"),
    path("entries/selection/", views.entry_selection, name="entry_selection"),
    path("entries/<str:entry_id>/", views.entry_detail, name="entry_detail"),
    path("entries/<str:entry_id>/legal-hold/", views.entry_legal_hold, name="entry_legal_hold"),
    path("health/", batch_views.health, name="health"),
    path("preservation/", views.preservation_report, name="preservation_report"),
    path("preservation.csv", views.preservation_export, name="preservation_export"),
    path("batches/", batch_views.batch_list, name="batch_list"),
    path("batches/new/", batch_views.batch_create, name="batch_create"),
    path("batches/<int:batch_id>/", batch_views.batch_detail, name="batch_detail"),
    path("batches/<int:batch_id>/confirm/", batch_views.batch_confirm, name="batch_confirm"),
    path("batches/<int:batch_id>/approve/", batch_views.batch_approve, name="batch_approve"),
    path("batches/<int:batch_id>/cancel/", batch_views.batch_cancel, name="batch_cancel"),
    path("batches/<int:batch_id>/retry/", batch_views.batch_retry, name="batch_retry"),
    path("restores/", restore_views.restore_list, name="restore_list"),
    path("restores/new/", restore_views.restore_new, name="restore_new"),
    path("restores/new/confirm/", restore_views.restore_create, name="restore_create"),
    path("restores/<int:restore_id>/", restore_views.restore_detail, name="restore_detail"),
    path("restores/<int:restore_id>/retry/", restore_views.restore_retry, name="restore_retry"),
    path("restores/<int:restore_id>/cancel/", restore_views.restore_cancel, name="restore_cancel"),
]

from archive_app.web import policy_views  # noqa: E402

urlpatterns += [
    path("policies/", policy_views.policy_list, name="policy_list"),
    path("policies/new/", policy_views.policy_create, name="policy_create"),
    path("policies/<int:policy_id>/", policy_views.policy_edit, name="policy_edit"),
    path("policies/<int:policy_id>/delete/", policy_views.policy_delete, name="policy_delete"),
    path("exemptions/", policy_views.exemption_list, name="exemption_list"),
    path("exemptions/entries/", policy_views.exemption_add, name="exemption_add"),
    path("exemptions/entries/<str:entry_id>/remove/", policy_views.exemption_remove, name="exemption_remove"),
    path("exemptions/categories/", policy_views.category_exclude, name="category_exclude"),
    path("exemptions/categories/<int:category_id>/remove/", policy_views.category_include, name="category_include"),
    path("keep/", policy_views.keep_entries, name="keep_entries"),
    path("audit/", audit_views.audit_log, name="audit_log"),
    path("audit/export.csv", audit_views.audit_export, name="audit_export"),
    path("healthz", liveness.healthz, name="healthz"),
]
