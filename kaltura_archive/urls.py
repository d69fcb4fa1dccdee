from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from archive_app.security import AdminSignInForm, SignInView

admin.site.login_form = AdminSignInForm  # the admin's own sign-in is throttled too

urlpatterns = [
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("rq/", include("django_rq.urls")),
    path("", include("archive_app.urls")),
]
