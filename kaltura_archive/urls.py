from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, include, path
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from archive_app.roles import archive_admin_required
from archive_app.sso.views import SsoSignInView
from archive_app.web.security import AdminSignInForm

# django-rq's own guard is "staff" (and a token for its JSON); here every one of its views is
# for archive admins only, and anyone else signed in gets 403.
rq_urlpatterns = [
    URLPattern(pattern.pattern, archive_admin_required(pattern.callback), pattern.default_args, pattern.name)
    for pattern in get_api_urlpatterns()
] + get_admin_urlpatterns(view_wrapper=archive_admin_required)

admin.site.login_form = AdminSignInForm  # the admin's own sign-in is throttled too

urlpatterns = [
    path("login/", SsoSignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("sso/", include("archive_app.sso.urls")),
    path("admin/", admin.site.urls),
    path("rq/", include((rq_urlpatterns, "django_rq"))),
    path("", include("archive_app.urls")),
]

handler404 = "archive_app.web.error_views.page_not_found"
