from django.urls import path

from archive_app import views

urlpatterns = [
    path("", views.home, name="home"),
]
